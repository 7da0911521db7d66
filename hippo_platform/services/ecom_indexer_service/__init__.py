"""ecom_indexer_service: moves uploaded document batches from ecom_ingest into the cell.

Uploads return as soon as ecom_ingest has the batch; this service is what makes them
searchable, polling often enough (100 ms by default) that an upload is in the cell
well within a second, and backing off while the cell or the buffer is down.
"""
