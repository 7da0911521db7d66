"""`python -m hippo_platform.services.exporter --kind settings|merchandising [--port P]`.

Environment (the stack's env contract): AWS_ENDPOINT_URL (the local moto server;
required, so an exporter can never write into a real account), HIPPODROME_TABLE_PREFIX
(names the exports bucket, `bucket_name(prefix)`), the dummy AWS credentials and
region, DEBUG. `--bucket` overrides the bucket name.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

from hippo_platform.resource_names import bucket_name
from hippo_platform.services.common import App, env_flag
from hippo_platform.services.common.aws_lite import AwsClient, AwsConfig, AwsConfigError
from hippo_platform.services.common.log import log_error, log_line
from hippo_platform.services.common.runner import main
from hippo_platform.services.exporter.api import KINDS, build_app
from hippo_platform.services.exporter.store import S3_ATTEMPTS, ExportStore

DEFAULT_PORTS = {"settings": 9010, "merchandising": 9011}
EXIT_CONFIG = 3  # not 2: that one means "could not listen" to whoever started us


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kind", choices=sorted(KINDS), required=True,
                        help="settings (ecom_settings_exporter) or merchandising")
    parser.add_argument("--bucket", default=None,
                        help="exports bucket (default: bucket_name(HIPPODROME_TABLE_PREFIX))")


def make_app(args: argparse.Namespace) -> App:
    kind = KINDS[args.kind]
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    prefix = os.environ.get("HIPPODROME_TABLE_PREFIX", "")
    if not endpoint:
        _config_error(kind.service, "AWS_ENDPOINT_URL is not set; the exporters only write "
                      "to the local moto server (run it with `hd up --profile ecom`)")
    if not args.bucket and not prefix:
        _config_error(kind.service, "HIPPODROME_TABLE_PREFIX is not set (it names the exports "
                      "bucket); set it or pass --bucket")
    bucket = args.bucket or bucket_name(prefix)
    try:
        store = ExportStore(bucket, AwsClient(AwsConfig.from_env(), attempts=S3_ATTEMPTS))
    except AwsConfigError as exc:  # no credentials, or a malformed endpoint
        _config_error(kind.service, str(exc))
    log_line(f"{kind.service}: '{kind.detail_type_prefix}*' events -> s3://{bucket}/"
             f"{kind.folder}/ on {endpoint}")
    app = build_app(kind, store, debug=env_flag("DEBUG"))
    app.close_hooks.append(store.s3.close)
    return app


def _config_error(service: str, text: str) -> NoReturn:
    log_error(f"{service}: {text}")
    raise SystemExit(EXIT_CONFIG)


def run(argv: list[str]) -> int:
    """The default port depends on --kind, so it is found before the real parse."""
    kind = "merchandising" if "merchandising" in argv else "settings"
    return main("exporter", DEFAULT_PORTS[kind], make_app, argv, add_arguments)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
