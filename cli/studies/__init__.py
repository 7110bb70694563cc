"""What each study takes from the command line, declared once as option groups, and how a
request becomes a study: no Typer here, so tests and benchmarks build studies without the CLI."""
