"""The server itself: is it up, and which spaces it knows."""

from __future__ import annotations

from fastapi import APIRouter

from ..spaces.registry import describe_spaces
from . import schemas
from .deps import ServiceDep, SettingsDep
from .limits import BoundedJSONRoute

router = APIRouter(prefix="/api", tags=["server"], route_class=BoundedJSONRoute)


@router.get("/health", response_model=schemas.Health)
def health(service: ServiceDep):
    return {
        "status": "ok",
        "space": service.space.name,
        "device": service.space.device,
        "preview": bool(service.space.info.get("preview")),
    }


@router.get("/spaces", response_model=list[schemas.SpaceRow], response_model_exclude_unset=True)
def spaces(service: ServiceDep, settings: SettingsDep):
    """Every space this server knows, whether it can load it here, and details of the one it runs."""
    return describe_spaces(settings, service.space)
