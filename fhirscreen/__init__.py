"""fhirscreen: find candidates for a clinical trial in a FHIR R4 EHR."""

__version__ = "0.1.0"
