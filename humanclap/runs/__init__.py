"""What a training run owns beyond the model: resume, launch checks, directory locks, the export with its
model card, and the results table of a sweep."""
