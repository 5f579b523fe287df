"""API errors rendered as Kubernetes Status bodies."""


class ApiError(Exception):
    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details or {}

    def status(self):
        body = {'kind': 'Status', 'apiVersion': 'v1', 'metadata': {}, 'status': 'Failure', 'message': self.message,
                'reason': self.reason, 'code': self.code}
        if self.details:
            body['details'] = self.details
        return body


def not_found(group, resource, name):
    qualified = '%s.%s' % (resource, group) if group else resource
    return ApiError(404, 'NotFound', '%s "%s" not found' % (qualified, name), {'name': name, 'group': group, 'kind': resource})


def already_exists(group, resource, name):
    qualified = '%s.%s' % (resource, group) if group else resource
    return ApiError(409, 'AlreadyExists', '%s "%s" already exists' % (qualified, name), {'name': name, 'group': group, 'kind': resource})


def conflict(group, resource, name):
    qualified = '%s.%s' % (resource, group) if group else resource
    return ApiError(409, 'Conflict', 'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    'please apply your changes to the latest version and try again' % (qualified, name),
                    {'name': name, 'group': group, 'kind': resource})


def invalid(kind, name, message, causes=None):
    return ApiError(422, 'Invalid', '%s "%s" is invalid: %s' % (kind, name or '', message),
                    {'name': name, 'kind': kind, 'causes': causes or [{'reason': 'FieldValueInvalid', 'message': message}]})


def bad_request(message):
    return ApiError(400, 'BadRequest', message)
