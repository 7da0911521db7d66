"""The names of the ecom profile's AWS resources, all `{table prefix}{suffix}`.

The platform's provisioning job creates them on moto; the orchestrator's events tooling
(`events.validate`, the `--enable-events` rule) looks for the same names, in moto or a
real account, where the reference's CDK stacks made them (DESIGN sections 5 and 6).
"""

TABLE_SUFFIXES = ("EcomIndexSettingsTable", "MerchandisingTable")
BUS_SUFFIXES = ("EcomEventBus", "MerchandisingEventBus")
PIPES = {
    "IndexSettingsEventPipe": ("EcomIndexSettingsTable", "EcomEventBus"),
    "MerchandisingEventPipe": ("MerchandisingTable", "MerchandisingEventBus"),
}
"""pipe suffix -> (table suffix it reads, bus suffix it feeds)"""
