"""The blursynth command line (installed as the package ``blursynth_cli``)."""
