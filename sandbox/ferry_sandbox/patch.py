"""PATCH bodies: JSON merge patch, JSON patch, strategic merge patch (common list keys)."""

import copy

import jsonpatch

from .errors import ApiError, bad_request

# Lists merged by a key in strategic merge patches, by field name (as in the Kubernetes types).
MERGE_KEYS = {
    'containers': 'name', 'initContainers': 'name', 'ephemeralContainers': 'name', 'volumes': 'name', 'volumeMounts': 'mountPath',
    'env': 'name', 'ports': 'containerPort', 'imagePullSecrets': 'name', 'tolerations': 'key', 'hostAliases': 'ip',
    'conditions': 'type', 'volumeDevices': 'devicePath', 'envFrom': None, 'finalizers': None, 'ownerReferences': 'uid',
    'topologySpreadConstraints': 'topologyKey', 'readinessGates': 'conditionType',
}
SERVICE_PORT_KEY = 'port'


def merge_patch(target, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge(target, patch, parent_key=None, kind=None):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    directives = {k: v for k, v in patch.items() if k.startswith('$')}
    if directives.get('$patch') == 'replace':
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith('$')}
    if directives.get('$patch') == 'delete':
        return None
    for key, value in patch.items():
        if key.startswith('$setElementOrder/') or key.startswith('$deleteFromPrimitiveList/') or key in ('$patch', '$retainKeys'):
            if key.startswith('$deleteFromPrimitiveList/'):
                field = key.split('/', 1)[1]
                result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS or (key == 'ports' and kind == 'Service'):
            merge_key = SERVICE_PORT_KEY if (key == 'ports' and kind == 'Service') else MERGE_KEYS.get(key)
            result[key] = _merge_list(result.get(key) or [], value, merge_key, kind)
        elif isinstance(value, dict):
            result[key] = strategic_merge(result.get(key), value, key, kind)
        else:
            result[key] = copy.deepcopy(value)
    return result


def _merge_list(current, patch, merge_key, kind):
    if merge_key is None:  # primitive or replace-style list
        if all(not isinstance(v, dict) for v in patch):
            merged = list(current)
            for value in patch:
                if value not in merged:
                    merged.append(value)
            return merged
        return copy.deepcopy(patch)
    if any(isinstance(v, dict) and v.get('$patch') == 'replace' for v in patch):
        return [copy.deepcopy(v) for v in patch if not (isinstance(v, dict) and v.get('$patch'))]
    merged = [copy.deepcopy(v) for v in current]
    for item in patch:
        if not isinstance(item, dict):
            merged.append(item)
            continue
        key_value = item.get(merge_key)
        index = next((i for i, existing in enumerate(merged) if isinstance(existing, dict) and existing.get(merge_key) == key_value), None)
        if item.get('$patch') == 'delete':
            if index is not None:
                merged.pop(index)
            continue
        if index is None:
            merged.append({k: v for k, v in item.items() if not k.startswith('$')})
        else:
            merged[index] = strategic_merge(merged[index], item, kind=kind)
    return merged


def apply_patch(obj, body, content_type):
    content_type = (content_type or '').split(';')[0].strip()
    try:
        if content_type == 'application/json-patch+json':
            return jsonpatch.apply_patch(obj, body)
        if content_type == 'application/merge-patch+json':
            return merge_patch(obj, body)
        if content_type == 'application/strategic-merge-patch+json':
            return strategic_merge(obj, body, kind=obj.get('kind'))
        if content_type == 'application/apply-patch+yaml':
            # Server-side apply without field ownership: the applied config is merged in
            # strategically (documented difference from a real API server).
            return strategic_merge(obj, body, kind=obj.get('kind'))
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise ApiError(422, 'Invalid', 'the JSON patch could not be applied: %s' % exc) from None
    raise ApiError(415, 'UnsupportedMediaType', 'the body of the request was in an unknown format - accepted media types include: '
                   'application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, '
                   'application/strategic-merge-patch+json')


def check_body(body):
    if not isinstance(body, (dict, list)):
        raise bad_request('the request body must be a JSON object')
