"""A stand-in for the Kubernetes API where a test only needs the objects a provider creates and deletes."""

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ApiError


class RecordingCluster:
    """Records POSTed objects by path and name; DELETE removes them (404 when absent), a second POST answers 409."""

    def __init__(self):
        self.objects = {}

    def request(self, method, path, query=None, body=None, content_type=None, timeout=None):  # pylint: disable=unused-argument
        if method == 'POST':
            key = '%s/%s' % (path, body['metadata']['name'])
            if key in self.objects:
                raise ApiError('%s exists' % key, status=409, reason='AlreadyExists')
            self.objects[key] = body
            return 201, body
        if method == 'DELETE':
            if path not in self.objects:
                raise ApiError('%s not found' % path, status=404, reason='NotFound')
            self.objects.pop(path)
            return 200, {}
        raise AssertionError('unexpected %s %s' % (method, path))
