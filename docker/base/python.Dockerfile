# Stand-in for the official python:3.11-slim-bookworm image where no registry answers (make
# test-containers): Debian bookworm with a CPython 3.11 built for bookworm in /usr/local, as the
# official image has it. Debian's own python3.11 (3.11.2) is older than the lock allows
# (soupsieve needs >= 3.11.5), so the build context holds `python/`: the install prefix of the
# CPython that runs the tests (scripts/container_engine.py stages it, without site-packages).
#   podman build -f docker/base/python.Dockerfile --build-arg DEBIAN_IMAGE=localhost/debian:bookworm CONTEXT
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
# The shared libraries CPython's extension modules link to; versions come from the Debian
# release the base image was made from.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates libbz2-1.0 libcrypt1 \
       libexpat1 libffi8 liblzma5 libncursesw6 libnsl2 libreadline8 libsqlite3-0 libssl3 \
       libtirpc3 libuuid1 netbase tzdata zlib1g \
    && rm -rf /var/lib/apt/lists/*
COPY python/ /usr/local/
RUN ldconfig && python3 -c "import ssl, sqlite3, ctypes, lzma, bz2, zlib, venv"
CMD ["python3"]
