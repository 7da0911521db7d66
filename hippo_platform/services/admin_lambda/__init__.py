"""admin_lambda stand-in: read-only index settings and rules straight from DynamoDB."""
