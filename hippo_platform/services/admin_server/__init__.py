"""admin_server: the e-commerce backend's local stand-in.

Index settings and merchandising rules live in DynamoDB tables on the local moto
server, as they do in the cloud, so the stream -> event pipe -> exporter path sees
real table changes; document uploads go through ecom_ingest to the cell.
"""
