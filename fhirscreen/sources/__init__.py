"""Where resources come from: files (bundles, NDJSON), a FHIR server, a Bulk Data export."""
