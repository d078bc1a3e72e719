"""Dataset folders (images + labels + FLAME parameters), the synthetic demo-head dataset, prep-data."""
