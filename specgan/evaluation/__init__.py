"""Quality: the offline metrics beside real baselines, and the rendered gallery."""
