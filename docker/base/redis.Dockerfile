# Stand-in for the official redis image where no registry answers (make test-containers):
# Debian bookworm's redis-server, run like the official image (user redis, data in /data,
# protected mode off, so other containers may connect).
#   podman build -f docker/base/redis.Dockerfile --build-arg DEBIAN_IMAGE=localhost/debian:bookworm docker/base
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
# Versions come from the Debian release the base image was made from.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends redis-server \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /data \
    && chown redis:redis /data
COPY --chmod=755 redis-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
WORKDIR /data
# The user the redis-server package creates (its uid is chosen at install time).
# hadolint ignore=DL3066
USER redis
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["redis-server"]
