"""The `agora` command line: a thin Typer layer over agora_core."""
