"""``python -m edgeseg`` (so ``torchrun -m edgeseg train ...`` works)."""

from edgeseg.cli import main

if __name__ == "__main__":
    main()
