"""The bundled stack's own end-to-end suite, run as a user's suite would be:
`invoke e2e hippo_platform.e2e -- --pyargs` against `hd up --profile ecom` (or full),
with the seed job's .env.e2e loaded. Standard library and pytest only."""
