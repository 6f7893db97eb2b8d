from engine_fixtures import (  # noqa: F401
    base_image,
    engine,
    engine_client,
    engine_host,
    registry,
)
