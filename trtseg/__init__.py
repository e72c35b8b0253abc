"""trtseg's shared plain-Python core: configuration, frame and result types, drawing, events, storage.

Nothing here imports Ray, so every piece is unit-testable on its own; `actors/` and
`deployments/` are thin shells around these classes.
"""

__version__ = "0.1.0"
