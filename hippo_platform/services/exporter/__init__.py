"""exporter: the event consumer behind the webhook, one module for both instances.

`--kind settings` (ecom_settings_exporter, 9010) takes `EcomIndexSettings.*` events,
`--kind merchandising` (merchandising_exporter, 9011) takes `Merchandising.*`: each
mirrors the table item an event describes into an S3 object on moto (or deletes it on
REMOVE), so a test can watch a settings change arrive at the far end of the pipeline
without an AWS account. One module, because the two differ only in a prefix.
"""
