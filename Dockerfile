# Hippodrome in a container: the whole stack, run from services.pex of `nox -s pex`
# (no source tree, no pip at run time).
#
#   nox -s pex && docker build -t hippodrome .
#   docker run --rm -p 9000-9019:9000-9019 hippodrome up --profile ecom --no-seed
#
# BASE_IMAGE needs the CPython services.pex was built for (3.11 unless `nox -s pex
# --force-python 3.13`) as python3.X on PATH, and useradd; `nox -s docker` passes a
# Debian bookworm bootstrapped locally.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# tini as PID 1: `hd up` starts every service in its own session, and a service's own
# children that outlive it are re-parented to PID 1, which must reap them; tini does,
# and forwards `docker stop`'s SIGTERM to hd for a graceful stop. Bootstrapped bases
# already have it.
RUN command -v tini >/dev/null 2>&1 || { apt-get update \
    && apt-get install -y --no-install-recommends tini=0.19.0-1+b3 \
    && rm -rf /var/lib/apt/lists/*; }

RUN useradd --no-log-init -l -m -u 10001 -U -s /bin/sh hippo \
    && install -d -o hippo -g hippo /srv/hippodrome

# One PEX file: `hd` runs services.pex with hd's entry point (`-m hippo_tasks`). hd.pex
# is the same dependency set again, 46 MB the image does not need twice.
COPY dist/pex/services.pex /opt/hippodrome/pex/
COPY build/image/hd /usr/local/bin/hd

# Docker mode: services run as `services.pex -m ...`, the project root (registry, logs,
# state, an optional hippodrome.toml mounted here) is /srv/hippodrome, and the
# dashboard binds 0.0.0.0.
# _PEX_CACHE_SET_LAST_ACCESS=0: PEX stamps its unpacked venv on every start, which
# fails on a read-only root (`docker run --read-only`) with a traceback.
ENV HIPPODROME_PEX_DIR=/opt/hippodrome/pex \
    HIPPODROME_SRC_DIR=/srv/hippodrome \
    _PEX_CACHE_SET_LAST_ACCESS=0
USER 10001:10001
WORKDIR /srv/hippodrome

# Unpack the PEX venv into ~/.cache/pex and compile its bytecode now, once, rather
# than at every container start (seconds before the first service could start). moto's
# ~150 service packages are compiled only for the few the stack uses, by importing them:
# all of moto's bytecode would add 29 MB.
RUN hd --version \
    && /opt/hippodrome/pex/services.pex -m compileall -q -j 0 -x /moto/ \
       /home/hippo/.cache/pex/installed_wheels >/dev/null \
    && /opt/hippodrome/pex/services.pex -c "import moto.server, moto.backends, \
       moto.dynamodb.responses, moto.dynamodbstreams.responses, moto.s3.responses, \
       moto.sqs.responses, moto.events.responses, moto.pipes.responses, \
       moto.iam.responses, moto.sts.responses, moto.secretsmanager.responses"

EXPOSE 9000-9019
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%d/healthz' % (9000 + int(os.environ.get('HIPPODROME_PORT_OFFSET') or 0)), timeout=4)"]

# `-e 143`: hd up exits 143 on SIGTERM, as a shell-run program should; a `docker stop`
# that stopped every service in order is the container's clean end, so exit 0.
ENTRYPOINT ["/usr/bin/tini", "-e", "143", "--", "hd"]
CMD ["up", "--profile", "full"]
