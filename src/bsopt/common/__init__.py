"""What every bsopt service shares: settings, input errors, the database."""
