# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Registry authentication: the ``WWW-Authenticate`` challenge (Basic, or Bearer with a token service) and the credentials to use.

A registry says how to authenticate in the challenge of a 401 answer. ``Basic``: send the user name and
password with every request. ``Bearer realm=... service=... scope=...``: ask the token service (the realm)
for a token covering the scopes, with the user name and password (Docker Hub, GCR, OCIR, Harbor...) or
an OAuth2 refresh token (Azure Container Registry), and send that token. Cloud registries hand out
user names and passwords from cloud credentials (ECR, GCR and ACR in ``cloud.py``); Oracle OCIR takes
``<tenancy-namespace>/<user>`` and an auth token (plain Basic/Bearer).

Secrets never reach messages: ``Credentials.secrets()`` lists them for scrubbing and for ``no_log``.
"""

from __future__ import annotations

import base64
import re
import threading
import time

from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import RegistryAuthError, RegistryError

ECR_HOST_RE = re.compile(r'^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$')
GCR_HOST_RE = re.compile(r'^(?:[a-z0-9-]+\.)?gcr\.io$|^[a-z0-9-]+-docker\.pkg\.dev$')
ACR_HOST_RE = re.compile(r'\.azurecr\.(?:io|cn|us)$')
OCIR_HOST_RE = re.compile(r'(?:^|\.)ocir\.io$|^ocir\.[a-z0-9-]+\.oci\.oraclecloud\.com$')
_CHALLENGE_TOKEN = re.compile(r'(?P<name>[A-Za-z0-9!#$%&\'*+.^_`|~-]+)(?:\s*=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^,\s]*))?|,')
TOKEN_MIN_LIFETIME = 60  # the distribution spec's default when the token service does not say
AUTH_KINDS = ('auto', 'basic', 'bearer', 'ecr', 'gcr', 'acr', 'ocir')
CLOUD_KINDS = ('ecr', 'gcr', 'acr')  # credentials from a cloud API (cloud.py)


class Credentials:
    """What to authenticate with: a user name and password, a ready bearer token, or an OAuth2 refresh token."""

    def __init__(self, username=None, password=None, token=None, refresh_token=None, kind='basic', preemptive=False):
        self.username = username
        self.password = password
        self.token = token
        self.refresh_token = refresh_token
        self.kind = kind
        self.preemptive = preemptive  # send Basic without waiting for a challenge (ECR, auth=basic)
        self.aad_token = None  # ACR: the Azure AD token that was exchanged
        self.endpoint = None  # ECR: the registry URL get_authorization_token names

    @property
    def anonymous(self):
        return not (self.username or self.password or self.token or self.refresh_token)

    def secrets(self):
        return [value for value in (self.password, self.token, self.refresh_token, self.aad_token) if value]

    def basic_header(self):
        raw = ('%s:%s' % (self.username or '', self.password or '')).encode('utf-8')
        return 'Basic ' + base64.b64encode(raw).decode('ascii')


def parse_challenge(header):
    """``[(scheme, {param: value})]`` from a ``WWW-Authenticate`` header (several challenges, quoted values with commas)."""
    challenges = []
    for match in _CHALLENGE_TOKEN.finditer(header or ''):
        name, value = match.group('name'), match.group('value')
        if name is None:
            continue
        if value is None:
            challenges.append((name.lower(), {}))
        elif challenges:
            if value.startswith('"') and value.endswith('"') and len(value) >= 2:
                value = re.sub(r'\\(.)', r'\1', value[1:-1])
            challenges[-1][1][name.lower()] = value
    return challenges


def repository_scope(repository, actions):
    return 'repository:%s:%s' % (repository, ','.join(actions))


def merge_scopes(scopes):
    """One scope per resource with the union of its actions, in a stable order (``pull`` before ``push``)."""
    merged = {}
    for scope in scopes:
        resource, _sep, actions = scope.rpartition(':')
        if not resource:
            merged.setdefault(scope, set())
            continue
        merged.setdefault(resource, set()).update(a for a in actions.split(',') if a)
    return ['%s:%s' % (resource, ','.join(sorted(actions))) if actions else resource for resource, actions in sorted(merged.items())]


def scrub(text, secrets):
    text = str(text)
    for secret in secrets or ():
        if secret and len(secret) >= 4:
            text = text.replace(secret, '***')
    return text


class Authenticator:
    """Answers a registry's challenges for one client: Basic headers, or bearer tokens cached per scope set."""

    def __init__(self, credentials, label, option, request):
        """``request(method, url, **kwargs)`` sends a token-service request (the client's session, its TLS settings)."""
        self.credentials = credentials or Credentials()
        self.label = label  # "source registry quay.io", for messages
        self.option = option  # "source", for messages naming the option to fix
        self._request = request
        self.scheme = 'basic' if self.credentials.preemptive else ('token' if self.credentials.token else None)
        self.realm = self.service = None
        self._tokens = {}
        self._widened = {}  # scopes asked for -> scopes the registry's challenge asked for on top
        self._lock = threading.Lock()

    def assume(self, scheme):
        """Start from the scheme an earlier run learned of this registry: with 'basic', the user name and password go with
        the first request instead of after a 401 (a registry that asks otherwise now is answered as ever)."""
        if scheme == 'basic' and self.scheme is None and (self.credentials.username or self.credentials.password):
            self.scheme = 'basic'

    def learned(self):
        """The scheme a later run may assume: 'basic' once the registry asked for Basic credentials (or was sent them first)."""
        return 'basic' if self.scheme == 'basic' and not self.credentials.anonymous else None

    def authorization(self, scopes):
        """The ``Authorization`` value for a request needing ``scopes``, or None (anonymous until challenged)."""
        if self.scheme == 'token':
            return 'Bearer ' + self.credentials.token
        if self.scheme == 'basic':
            return self.credentials.basic_header() if not self.credentials.anonymous else None
        if self.scheme == 'bearer':
            return 'Bearer ' + self._token(scopes)
        return None

    def challenged(self, header, scopes, sent):
        """A 401 came back with ``header`` after sending ``sent``: True when a retry with new credentials makes sense.

        Raises RegistryAuthError when what was sent is what the challenge asks for (wrong credentials, or a
        token the token service issued without the actions the request needs).
        """
        challenges = dict(parse_challenge(header))
        bearer = challenges.get('bearer')
        if bearer and bearer.get('realm') and self.scheme != 'token':
            wanted = merge_scopes(list(scopes) + [s for s in (bearer.get('scope') or '').split(' ') if s])
            with self._lock:
                self.scheme, self.realm, self.service = 'bearer', bearer['realm'], bearer.get('service')
                stale = self._tokens.pop(tuple(wanted), None)
                self._widened[tuple(merge_scopes(scopes))] = wanted
            if sent and stale is not None and sent == 'Bearer ' + stale[0]:
                self._fail(403 if bearer.get('error') == 'insufficient_scope' else 401, wanted)
            self._token(wanted)
            return True
        if 'basic' in challenges or (not challenges and not self.credentials.anonymous):
            if self.credentials.anonymous or (sent or '').startswith('Basic '):
                self._fail(401, scopes)
            self.scheme = 'basic'
            return True
        self._fail(401, scopes)
        return False

    def _fail(self, status, scopes):
        raise RegistryAuthError(auth_message(self.label, self.option, self.credentials, status, scopes))

    def _token(self, scopes):
        key = tuple(merge_scopes(scopes))
        with self._lock:
            key = tuple(self._widened.get(key, key))
            cached = self._tokens.get(key)
            if cached and cached[1] > time.monotonic() + 10:
                return cached[0]
        token, lifetime = self._fetch_token(list(key))
        with self._lock:
            self._tokens[key] = (token, time.monotonic() + lifetime)
        return token

    def _fetch_token(self, scopes):
        creds = self.credentials
        if creds.refresh_token:
            form = {'grant_type': 'refresh_token', 'refresh_token': creds.refresh_token, 'client_id': 'ferry'}
            if self.service:
                form['service'] = self.service
            if scopes:
                form['scope'] = ' '.join(scopes)
            response = self._request('POST', self.realm, data=form)
        else:
            params = [('service', self.service)] if self.service else []
            params += [('scope', scope) for scope in scopes]
            auth = None
            if creds.username or creds.password:
                params.append(('account', creds.username or ''))
                auth = (creds.username or '', creds.password or '')
            response = self._request('GET', self.realm, params=params, auth=auth)
        if response.status_code in (401, 403):
            raise RegistryAuthError(auth_message(self.label, self.option, creds, response.status_code, scopes, token_service=self.realm))
        if response.status_code != 200:
            raise RegistryError('the token service %s of the %s answered HTTP %d: %s' % (
                self.realm, self.label, response.status_code, scrub(response.text[:300], creds.secrets())))
        try:
            answer = response.json()
        except ValueError:
            raise RegistryError('the token service %s of the %s did not answer JSON' % (self.realm, self.label)) from None
        token = answer.get('token') or answer.get('access_token')
        if not token:
            raise RegistryError('the token service %s of the %s answered without a token' % (self.realm, self.label))
        lifetime = max(int(answer.get('expires_in') or TOKEN_MIN_LIFETIME), TOKEN_MIN_LIFETIME)
        return token, lifetime


def auth_message(label, option, credentials, status, scopes, token_service=None):
    """What a 401/403 means and which options to check; never the secrets themselves."""
    where = ' (token service %s)' % token_service if token_service else ''
    wanted = ', '.join(scopes) if scopes else 'access'
    if status == 403:
        return ('the %s%s denied %s for these credentials (HTTP 403): give %s.username (or the cloud identity) '
                'permission to pull from the source or push to the target repository' % (label, where, wanted, option))
    kind = credentials.kind
    if credentials.anonymous:
        how = 'no credentials were given: set %s.username and %s.password (or %s.token, or cloud credentials)' % (option, option, option)
    elif kind == 'ecr':
        how = 'the ECR authorization token was refused: check %s.ecr (region, account, IAM permission ecr:GetAuthorizationToken and pull/push)' % option
    elif kind == 'gcr':
        how = 'the Google access token was refused: check %s.gcr credentials and their Artifact Registry/Storage roles' % option
    elif kind == 'acr':
        how = 'the Azure AD identity was refused: check %s.acr (tenant, client, secret) and its AcrPull/AcrPush role' % option
    elif credentials.token and not credentials.username:
        how = 'the token in %s.token was refused or has expired' % option
    elif kind == 'ocir':
        how = ('check %s.username (<tenancy-namespace>/<user>, or <namespace>/oracleidentitycloudservice/<user>) and %s.password '
               '(an auth token, not the console password)' % (option, option))
    else:
        how = 'check %s.username and %s.password (user "%s")' % (option, option, credentials.username or '')
    return 'the %s%s refused the credentials for %s (HTTP 401): %s' % (label, where, wanted, how)


# -- choosing the credentials ---------------------------------------------------------------------

def detect_kind(config, host):
    """The auth kind for ``auto``: a cloud kind from the options given or the registry host, else generic."""
    kind = (config.get('auth') or 'auto').lower()
    if kind != 'auto':
        return kind
    for cloud in ('ecr', 'gcr', 'acr'):
        if config.get(cloud):
            return cloud
    if config.get('username') or config.get('password') or config.get('token'):
        return 'ocir' if OCIR_HOST_RE.search(host) else 'bearer'
    if ECR_HOST_RE.match(host):
        return 'ecr'
    if GCR_HOST_RE.match(host):
        return 'gcr'
    if ACR_HOST_RE.search(host):
        return 'acr'
    return 'bearer'


def resolve_credentials(config, host, option, request=None):
    """``Credentials`` for a registry's config (the module's ``source``/``target`` dict); may call a cloud API."""
    config = config or {}
    kind = detect_kind(config, host)
    if kind not in AUTH_KINDS:
        raise RegistryError('%s.auth is "%s": choose one of %s' % (option, kind, ', '.join(AUTH_KINDS)))
    if kind in CLOUD_KINDS:  # their code (and what it imports) is read only when a cloud registry is asked for
        from ansible_collections.ferry.kube.plugins.module_utils.registry import cloud  # pylint: disable=import-outside-toplevel
        return cloud.credentials(kind, config, host, option, request)
    username, password, token = config.get('username'), config.get('password'), config.get('token')
    if (username and not password) or (password and not username):
        missing = 'password' if username else 'username'
        raise RegistryError('%s.%s is not set: give both %s.username and %s.password' % (option, missing, option, option))
    if kind == 'ocir':
        if username and '/' not in username:
            raise RegistryError('%s.username "%s" is not an OCIR user name: write it as <tenancy-namespace>/<user> '
                                '(federated users: <tenancy-namespace>/oracleidentitycloudservice/<user>)' % (option, username))
        return Credentials(username, password, kind='ocir')
    return Credentials(username, password, token=token, kind=kind, preemptive=kind == 'basic')
