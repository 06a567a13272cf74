#!/bin/sh
# As the official redis image does: a redis-server started without a configuration file accepts
# connections from other containers (protected mode would refuse every non-loopback client).
if [ "$1" = redis-server ]; then
  set -- "$@" --protected-mode no
fi
exec "$@"
