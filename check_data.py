"""check_data entry point: see visionzoo/cli.py and configs/check_data.yaml."""

from visionzoo.cli import check_data_entry

if __name__ == "__main__":
    check_data_entry()
