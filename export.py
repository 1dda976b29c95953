"""export entry point: see visionzoo/cli.py and configs/export.yaml."""

from visionzoo.cli import export_entry

if __name__ == "__main__":
    export_entry()
