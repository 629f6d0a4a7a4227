"""Reading poetry.lock: which exact files an image role installs."""
