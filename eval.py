"""Eval entry point: see visionzoo/cli.py and configs/eval.yaml."""

from visionzoo.cli import eval_entry

if __name__ == "__main__":
    eval_entry()
