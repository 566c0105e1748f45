"""Job launchers behind utils/local.py and utils/slurm.py (Kaldi's $cmd); see README.md here."""
