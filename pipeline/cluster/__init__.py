"""Running pipeline stages on a Ray cluster as Ray Jobs: the submitting side and the job side."""
