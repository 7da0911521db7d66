"""ecom_indexer: the SQS-driven half of document uploads (queue on moto -> the cell)."""
