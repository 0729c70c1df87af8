"""augment"""

__all__: list[str] = []
