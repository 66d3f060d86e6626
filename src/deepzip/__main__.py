"""`python -m deepzip …`: the same command as `deepzip …` (and what torchrun starts with -m)."""
from .cli import main

main()
