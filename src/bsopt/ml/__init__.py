"""The neural pricer: training data from the analytic model, an MLP, versioned storage."""
