from engine_fixtures import base_image, engine, registry  # noqa: F401
