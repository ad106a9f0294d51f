"""The quiz: a hidden point of the map is decoded, players guess where on the map it came from."""

from __future__ import annotations

from fastapi import APIRouter, Header, Response

from ..maps.classroom import Classroom, QuizRound
from . import schemas
from .deps import ClassroomDep, DisconnectCheck, EditableMap, ServiceDep
from .limits import BoundedJSONRoute
from .responses import decode_url

router = APIRouter(prefix="/api", tags=["classroom"], route_class=BoundedJSONRoute)


def _round_out(classroom: Classroom, r: QuizRound) -> dict:
    out = classroom.result(r)
    return {**out, "image_url": decode_url(out.pop("image_key"))}


@router.post(
    "/maps/{map_id}/quiz", status_code=201, response_model=schemas.QuizStarted, response_model_exclude_unset=True
)
def start_quiz(
    map_id: EditableMap,
    service: ServiceDep,
    classroom: ClassroomDep,
    gone: DisconnectCheck,
    body: schemas.QuizIn | None = None,
):
    """A hidden point near the map's items is decoded; players guess where it came from."""
    x, y, seed = classroom.pick_target(service.store.positions(map_id)[0], body.seed if body else None)
    decoded = service.decode_at(map_id, x, y, seed, gone)
    r, key = classroom.new_round(map_id, x, y, seed, decoded.key)
    return {**_round_out(classroom, r), "presenter_key": key}


@router.post("/quiz/{round_id}/guess", status_code=204)
def guess(round_id: str, body: schemas.GuessIn, classroom: ClassroomDep):
    classroom.guess(round_id, body.player, body.x, body.y)
    return Response(status_code=204)


@router.get("/quiz/{round_id}", response_model=schemas.QuizRound, response_model_exclude_unset=True)
def quiz_round(round_id: str, classroom: ClassroomDep):
    return _round_out(classroom, classroom.round(round_id))


@router.post("/quiz/{round_id}/reveal", response_model=schemas.QuizRound, response_model_exclude_unset=True)
def reveal(round_id: str, classroom: ClassroomDep, x_presenter_key: str | None = Header(None)):
    return _round_out(classroom, classroom.reveal(round_id, x_presenter_key))
