// What the page knows about one item of the map.

/** Images (and prompts of spaces that generate a picture for each) have a thumbnail; JSON says which. */
export function hasThumbnail(item) {
  return item.thumbnail === undefined ? item.kind !== "text" : Boolean(item.thumbnail);
}

export function thumbnailUrl(item) {
  return `/api/items/${encodeURIComponent(item.id)}/thumbnail`;
}
