# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A pool in an S3 bucket (AWS or any S3-compatible store: MinIO, Ceph RGW, R2, ...), through boto3.

Create-only writes use a conditional PUT (``If-None-Match: *``), so two writers racing for the same
name cannot both win. Stores that do not implement that header get a HEAD followed by a PUT instead:
pool objects are named by content or a fresh id, so the small window that leaves is harmless.
"""

from __future__ import annotations

import time

try:
    import boto3
    import botocore.exceptions
    from botocore.config import Config
except ImportError:  # reported by S3Backend() with a hint, so the rest of the collection still imports
    boto3 = botocore = Config = None

from ansible_collections.ferry.kube.plugins.module_utils.pool.backends import Backend, BackendError, NotFound

# What an operation needs in an IAM policy, for "access denied" messages.
PERMISSIONS = {
    'write': 's3:PutObject',
    'replace': 's3:PutObject',
    'read': 's3:GetObject',
    'size': 's3:GetObject',
    'list': 's3:ListBucket',
    'delete': 's3:DeleteObject',
}
DENIED = ('AccessDenied', 'AllAccessDisabled', 'Forbidden', '403')
BAD_CREDENTIALS = ('InvalidAccessKeyId', 'SignatureDoesNotMatch', 'ExpiredToken', 'InvalidToken', 'TokenRefreshRequired', 'AuthorizationHeaderMalformed')
MISSING = ('NoSuchKey', 'NotFound', '404')
STREAM_ATTEMPTS = 3  # botocore retries requests, not a body that breaks off while being read


class S3Backend(Backend):
    """Objects under ``prefix`` in ``bucket``; one boto3 client, which threads may share."""

    def __init__(self, bucket, prefix, options=None):
        if boto3 is None:
            raise BackendError('the s3:// pool backend needs boto3: install boto3: pip install boto3')
        options = dict(options or {})
        self.bucket = bucket
        self._use_prefix(prefix)
        self.endpoint = options.get('endpoint_url') or None
        where = 's3://%s/%s' % (bucket, self.prefix) if self.prefix else 's3://%s' % bucket
        self.location = '%s at %s' % (where, self.endpoint) if self.endpoint else where
        self._secrets = [value for value in (options.get('secret_key'), options.get('session_token')) if value]
        self._conditional = True  # cleared once the store says it does not implement If-None-Match

        config = {
            'retries': {'mode': 'standard', 'max_attempts': int(options.get('max_attempts') or 5)},
            'max_pool_connections': 16,
            'connect_timeout': 10,
            'read_timeout': 120,
        }
        if options.get('addressing_style'):
            if options['addressing_style'] not in ('path', 'virtual', 'auto'):
                raise BackendError('S3 addressing_style must be path or virtual, not %r' % options['addressing_style'])
            config['s3'] = {'addressing_style': options['addressing_style']}
        if self.endpoint:
            # S3-compatible stores often reject the CRC checksum headers that newer botocore adds by
            # default; send them only where the operation requires one. Older botocore lacks the option.
            config['request_checksum_calculation'] = 'when_required'
            config['response_checksum_validation'] = 'when_required'
        try:
            client_config = Config(**config)
        except TypeError:
            config.pop('request_checksum_calculation', None)
            config.pop('response_checksum_validation', None)
            client_config = Config(**config)

        verify = options.get('ca_bundle') or options.get('verify', True)
        try:
            session = boto3.session.Session(
                aws_access_key_id=options.get('access_key') or None,
                aws_secret_access_key=options.get('secret_key') or None,
                aws_session_token=options.get('session_token') or None,
                region_name=options.get('region') or None,
                profile_name=options.get('profile') or None,
            )
            self._client = session.client('s3', endpoint_url=self.endpoint, verify=verify, config=client_config)
        except botocore.exceptions.ProfileNotFound:
            raise BackendError('the AWS profile %r named for %s is not configured (see ~/.aws/config)' % (options.get('profile'), self.location)) from None
        except (botocore.exceptions.BotoCoreError, ValueError) as exc:
            raise BackendError('cannot set up the S3 client for %s: %s' % (self.location, self._scrub(str(exc)))) from None

    # --- the Backend interface ------------------------------------------------------------------

    def write(self, key, data):
        name = self._name(key)
        if self._conditional:
            for attempt in range(3):
                try:
                    self._client.put_object(Bucket=self.bucket, Key=name, Body=data, IfNoneMatch='*')
                    return
                except botocore.exceptions.ParamValidationError:
                    self._conditional = False  # botocore older than 1.35 cannot send If-None-Match
                    break
                except botocore.exceptions.ClientError as exc:
                    code, status = _code(exc)
                    if code == 'PreconditionFailed' or status == 412:
                        self._check_existing(key, len(data))
                        return
                    if code == 'ConditionalRequestConflict' and attempt < 2:
                        time.sleep(0.2 * (attempt + 1))  # a concurrent conditional write is in flight: AWS asks to retry
                        continue
                    if code == 'NotImplemented' or status == 501:
                        self._conditional = False
                        break
                    raise self._error('write', key, exc) from None
                except botocore.exceptions.BotoCoreError as exc:
                    raise self._error('write', key, exc) from None
        # Without conditional writes: look first, then put.
        if self.size(key) is not None:
            self._check_existing(key, len(data))
            return
        self._put(key, data, 'write')

    def replace(self, key, data):
        self._put(key, data, 'replace')

    def read(self, key, offset=0, length=None):
        if length is not None and length <= 0:
            return b''
        request = {'Bucket': self.bucket, 'Key': self._name(key)}
        if offset or length is not None:
            request['Range'] = 'bytes=%d-%s' % (offset, '' if length is None else offset + length - 1)
        for attempt in range(STREAM_ATTEMPTS):
            try:
                response = self._client.get_object(**request)
                with response['Body'] as body:
                    return body.read()
            except botocore.exceptions.ClientError as exc:
                code, status = _code(exc)
                if code in MISSING:
                    raise NotFound('%s does not exist' % self._describe(key)) from None
                if code == 'InvalidRange' or status == 416:
                    return b''  # offset at or past the end, like reading past the end of a file
                raise self._error('read', key, exc) from None
            except (botocore.exceptions.ResponseStreamingError, botocore.exceptions.IncompleteReadError, botocore.exceptions.ReadTimeoutError) as exc:
                if attempt == STREAM_ATTEMPTS - 1:
                    raise self._error('read', key, exc) from None
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error('read', key, exc) from None
        raise AssertionError('unreachable')

    def list(self, prefix):
        paginator = self._client.get_paginator('list_objects_v2')
        cut = len(self._root)
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._root + prefix):
                for item in page.get('Contents', ()):
                    yield item['Key'][cut:], item['Size']
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error('list', prefix + '*', exc) from None

    def delete(self, key):
        try:
            self._client.delete_object(Bucket=self.bucket, Key=self._name(key))
        except botocore.exceptions.ClientError as exc:
            if _code(exc)[0] in MISSING:
                return
            raise self._error('delete', key, exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error('delete', key, exc) from None

    def size(self, key):
        try:
            return self._client.head_object(Bucket=self.bucket, Key=self._name(key))['ContentLength']
        except botocore.exceptions.ClientError as exc:
            # HEAD answers have no body: a missing bucket is a bare 404 too, and shows up on the next write.
            if _code(exc)[0] in MISSING:
                return None
            raise self._error('size', key, exc) from None
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error('size', key, exc) from None

    def close(self):
        close = getattr(self._client, 'close', None)
        if close:
            close()

    # --- helpers -----------------------------------------------------------------------------

    def _name(self, key):
        return self._root + key

    def _put(self, key, data, action):
        try:
            self._client.put_object(Bucket=self.bucket, Key=self._name(key), Body=data)
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as exc:
            raise self._error(action, key, exc) from None

    def _error(self, action, key, exc):
        """A BackendError naming the object, what was attempted and why it failed, without secrets."""
        what = 'cannot %s %s' % (action, self._describe(key))
        if isinstance(exc, botocore.exceptions.ClientError):
            code, status = _code(exc)
            detail = exc.response.get('Error', {}).get('Message') or ''
            if code == 'NoSuchBucket':
                message = ('%s: bucket %r does not exist%s; create it first (aws s3 mb s3://%s, or in the provider\'s console) '
                           'or correct the pool location' % (what, self.bucket, ' at ' + self.endpoint if self.endpoint else '', self.bucket))
            elif code in DENIED:
                message = '%s: access denied: the credentials in use lack permission (%s on bucket %r)' % (what, PERMISSIONS.get(action, 's3:*'), self.bucket)
            elif code in BAD_CREDENTIALS:
                message = '%s: the store rejected the credentials (%s)%s' % (what, code, ': ' + detail if detail else '')
            else:
                message = '%s: %s%s' % (what, code or 'HTTP %s' % status, ': ' + detail if detail else '')
        elif isinstance(exc, botocore.exceptions.NoCredentialsError):
            message = '%s: no S3 credentials found: set access_key and secret_key, a profile, or the AWS_* environment variables' % what
        elif isinstance(exc, (botocore.exceptions.EndpointConnectionError, botocore.exceptions.ConnectTimeoutError)):
            endpoint = self.endpoint or exc.kwargs.get('endpoint_url') or 'the AWS S3 endpoint'
            message = '%s: cannot reach the S3 endpoint %s (%s)' % (what, endpoint, exc)
        else:
            message = '%s: %s' % (what, exc)
        return BackendError(self._scrub(message))


def _code(exc):
    """The S3 error code and HTTP status of a ClientError."""
    response = exc.response or {}
    return response.get('Error', {}).get('Code', ''), response.get('ResponseMetadata', {}).get('HTTPStatusCode')
