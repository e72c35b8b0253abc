"""Ray Serve deployments: the HTTP API (FastAPI ingress) and the web dashboard it serves.

`deployments.api.create_app` builds the plain FastAPI app (testable without Serve);
`deployments.app.build_app` / `deploy` wrap it in a Serve deployment.
"""
