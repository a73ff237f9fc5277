"""The shared runtime every Marque service is built on."""
