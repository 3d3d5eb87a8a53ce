"""The dashboard: static files (HTML, CSS, JavaScript modules and a vendored chart library)
served by the broker itself at ``/ui/``, reading only the public API and its feeds."""
