"""Predict entry point: see visionzoo/cli.py and configs/predict.yaml."""

from visionzoo.cli import predict_entry

if __name__ == "__main__":
    predict_entry()
