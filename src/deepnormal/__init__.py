"""deepnormal: tracked, reproducible heteroscedastic regression."""
