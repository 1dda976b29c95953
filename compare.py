"""Compare entry point: see visionzoo/cli/__init__.py and configs/compare.yaml."""

from visionzoo.cli import compare_entry

if __name__ == "__main__":
    compare_entry()
