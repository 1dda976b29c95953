"""Train entry point: see visionzoo/cli.py and configs/train.yaml."""

from visionzoo.cli import train_entry

if __name__ == "__main__":
    train_entry()
