"""The ERP adapter: Marque's confirmed orders as SAP S/4HANA sales orders (issue 15)."""
