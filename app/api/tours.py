"""Guided tours: saved, captioned sequences of views and decodes on a map."""

from __future__ import annotations

from fastapi import APIRouter, Response

from ..maps.classroom import check_tour
from . import schemas
from .deps import EditableMap, ExistingMap, ServiceDep, StoreDep
from .limits import BoundedJSONRoute

router = APIRouter(prefix="/api", tags=["classroom"], route_class=BoundedJSONRoute)


@router.post("/maps/{map_id}/tours", status_code=201, response_model=schemas.Tour)
def save_tour(body: schemas.TourIn, map_id: EditableMap, service: ServiceDep):
    title, steps = check_tour(body.title, [s.model_dump() for s in body.steps], service.settings)
    return service.store.save_tour(map_id, title, steps)


@router.get("/maps/{map_id}/tours", response_model=schemas.ToursOut)
def list_tours(map_id: ExistingMap, store: StoreDep):
    return {"tours": store.tours(map_id)}


@router.get("/maps/{map_id}/tours/{tour_id}", response_model=schemas.Tour)
def get_tour(tour_id: str, map_id: ExistingMap, store: StoreDep):
    return store.get_tour(map_id, tour_id)


@router.delete("/maps/{map_id}/tours/{tour_id}", status_code=204)
def delete_tour(tour_id: str, map_id: EditableMap, store: StoreDep):
    store.delete_tour(map_id, tour_id)
    return Response(status_code=204)
