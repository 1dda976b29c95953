# visionzoo on a CUDA runtime. Build: docker build -t visionzoo .
# Run:   docker run --gpus all -v $PWD/outputs:/home/vz/app/outputs visionzoo python train.py trainer=gpu
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential \
      libgl1 libglib2.0-0 \
 && rm -rf /var/lib/apt/lists/*

RUN useradd --create-home --uid 1000 vz
USER vz
WORKDIR /home/vz/app
RUN python3 -m venv /home/vz/venv
ENV PATH=/home/vz/venv/bin:$PATH VISIONZOO_CACHE=/home/vz/.cache/visionzoo

# Dependencies first (cached layer), then the code; editable so configs/ stays next to the code.
COPY --chown=vz:vz pyproject.toml README.md ./
COPY --chown=vz:vz visionzoo ./visionzoo
RUN pip install --upgrade pip && pip install -e .
COPY --chown=vz:vz . .

CMD ["python", "train.py", "trainer=gpu"]
