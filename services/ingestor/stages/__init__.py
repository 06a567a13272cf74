"""The pipeline's stages, in the order ``pipeline.run_pipeline`` runs them: ``download`` (sources
to local files), ``convert`` (raw records to conversation records), ``filter`` (structure and
language), ``split`` (token budget) and ``merge`` (shuffle and write the dataset). ``counts`` is
their record accounting and ``parallel`` their process pool."""
