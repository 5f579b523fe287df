# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Registry authentication: the ``WWW-Authenticate`` challenge (Basic, or Bearer with a token service) and cloud credentials.

A registry says how to authenticate in the challenge of a 401 answer. ``Basic``: send the user name and
password with every request. ``Bearer realm=... service=... scope=...``: ask the token service (the realm)
for a token covering the scopes, with the user name and password (Docker Hub, GCR, OCIR, Harbor...) or
an OAuth2 refresh token (Azure Container Registry), and send that token. Cloud registries hand out
user names and passwords from cloud credentials:

- Amazon ECR: ``AWS`` and the password in boto3's ``ecr.get_authorization_token``;
- Google Container/Artifact Registry: ``oauth2accesstoken`` and a google-auth access token;
- Azure Container Registry: an Azure AD access token exchanged at ``/oauth2/exchange`` for a refresh token;
- Oracle OCIR: ``<tenancy-namespace>/<user>`` and an auth token (plain Basic/Bearer).

Secrets never reach messages: ``Credentials.secrets()`` lists them for scrubbing and for ``no_log``.
"""

from __future__ import annotations

import base64
import re
import threading
import time

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import ClusterError, ConnectionConfigError
from ansible_collections.ferry.kube.plugins.module_utils.registry.errors import RegistryAuthError, RegistryError

ECR_HOST_RE = re.compile(r'^(?P<account>[0-9]{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?$')
GCR_HOST_RE = re.compile(r'^(?:[a-z0-9-]+\.)?gcr\.io$|^[a-z0-9-]+-docker\.pkg\.dev$')
ACR_HOST_RE = re.compile(r'\.azurecr\.(?:io|cn|us)$')
OCIR_HOST_RE = re.compile(r'(?:^|\.)ocir\.io$|^ocir\.[a-z0-9-]+\.oci\.oraclecloud\.com$')
GCR_USERNAME = 'oauth2accesstoken'
ACR_REFRESH_USERNAME = '00000000-0000-0000-0000-000000000000'
ACR_AAD_AUDIENCE = 'https://management.azure.com'  # ACR's /oauth2/exchange takes ARM tokens
ACR_AAD_SCOPE = ACR_AAD_AUDIENCE + '/.default'
_CHALLENGE_TOKEN = re.compile(r'(?P<name>[A-Za-z0-9!#$%&\'*+.^_`|~-]+)(?:\s*=\s*(?P<value>"(?:[^"\\]|\\.)*"|[^,\s]*))?|,')
TOKEN_MIN_LIFETIME = 60  # the distribution spec's default when the token service does not say
AUTH_KINDS = ('auto', 'basic', 'bearer', 'ecr', 'gcr', 'acr', 'ocir')


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
    username, password, token = config.get('username'), config.get('password'), config.get('token')
    if kind == 'ecr':
        return ecr_credentials(config.get('ecr') or {}, host, option)
    if kind == 'gcr':
        if username or password:
            return Credentials(username, password, kind='gcr')
        return Credentials(GCR_USERNAME, google_access_token(config.get('gcr') or {}, option), kind='gcr')
    if kind == 'acr':
        if username and password:  # an admin user, a scope-map token, or a service principal's id and secret
            return Credentials(username, password, kind='acr')
        return acr_credentials(config.get('acr') or {}, host, option, request)
    if (username and not password) or (password and not username):
        missing = 'password' if username else 'username'
        raise RegistryError('%s.%s is not set: give both %s.username and %s.password' % (option, missing, option, option))
    if kind == 'ocir':
        if username and '/' not in username:
            raise RegistryError('%s.username "%s" is not an OCIR user name: write it as <tenancy-namespace>/<user> '
                                '(federated users: <tenancy-namespace>/oracleidentitycloudservice/<user>)' % (option, username))
        return Credentials(username, password, kind='ocir')
    return Credentials(username, password, token=token, kind=kind, preemptive=kind == 'basic')


def ecr_credentials(options, host, option):
    """``AWS`` and the password of ``ecr:GetAuthorizationToken`` for the registry's account and region."""
    try:
        import boto3  # pylint: disable=import-outside-toplevel
        import botocore.exceptions  # pylint: disable=import-outside-toplevel
    except ImportError:
        raise RegistryError('Amazon ECR needs the Python library boto3: pip install boto3') from None
    match = ECR_HOST_RE.match(host or '')
    region = options.get('region') or (match.group('region') if match else None)
    kwargs = {}
    if options.get('profile'):
        kwargs['profile_name'] = options['profile']
    if options.get('access_key'):
        kwargs.update(aws_access_key_id=options['access_key'], aws_secret_access_key=options.get('secret_key'),
                      aws_session_token=options.get('session_token'))
    if region:
        kwargs['region_name'] = region
    try:
        session = boto3.session.Session(**kwargs)
    except botocore.exceptions.ProfileNotFound as exc:
        raise RegistryError('%s.ecr.profile: %s; name a profile from ~/.aws/config' % (option, exc)) from None
    if not session.region_name:
        raise RegistryError('%s.ecr.region is not set and registry host %s does not name one: give the ECR region (or set AWS_REGION)'
                            % (option, host))
    registry_id = options.get('registry_id') or (match.group('account') if match else None)
    try:
        client = session.client('ecr', endpoint_url=options.get('endpoint_url'))
        answer = client.get_authorization_token(**({'registryIds': [registry_id]} if registry_id else {}))
        data = answer['authorizationData'][0]
    except botocore.exceptions.NoCredentialsError:
        raise RegistryError('no AWS credentials for ECR registry %s: set %s.ecr.access_key and secret_key, %s.ecr.profile, '
                            'or the AWS_* variables' % (host, option, option)) from None
    except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
        raise RegistryAuthError('cannot get an ECR authorization token for %s (%s.ecr): %s' % (host, option, _first_line(exc))) from None
    username, _sep, password = base64.b64decode(data['authorizationToken']).decode('utf-8').partition(':')
    creds = Credentials(username, password, kind='ecr', preemptive=True)
    creds.endpoint = data.get('proxyEndpoint')
    return creds


def _cloud_detail(exc):
    """The reason in a cloud_auth error, without its Kubernetes wording ("... for GKE: <reason>")."""
    return str(exc).split(': ', 1)[-1]


def google_access_token(options, option):
    """An OAuth2 access token from ``gcr.access_token``, a service-account key, or application default credentials.

    The token comes from the same google-auth code as GKE connections (``kube.cloud_auth``), with registry wording.
    """
    if options.get('access_token'):
        return options['access_token']
    from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth  # pylint: disable=import-outside-toplevel
    try:
        return cloud_auth.gke_credentials(options).token
    except ConnectionConfigError as exc:
        raise RegistryError('%s.gcr credentials are not a valid service-account key: %s' % (option, _cloud_detail(exc))) from None
    except ClusterError as exc:
        if 'google-auth' in str(exc) and 'pip install' in str(exc):
            raise RegistryError('Google Container/Artifact Registry needs the Python library google-auth: pip install google-auth') from None
        raise RegistryAuthError('cannot get a Google access token for the registry (%s.gcr): %s' % (option, _cloud_detail(exc))) from None


def azure_ad_token(options, option, **credential_kwargs):
    """An Azure AD access token for ACR's exchange: ``acr.access_token``, a service principal, or the default credential chain.

    Acquired by the same azure-identity code as AKS connections (``kube.cloud_auth``), for the ARM audience.
    """
    if options.get('access_token'):
        return options['access_token']
    if options.get('client_secret'):
        missing = [key for key in ('tenant_id', 'client_id') if not options.get(key)]
        if missing:
            raise RegistryError('%s.acr needs %s with client_secret' % (option, ', '.join('%s.acr.%s' % (option, m) for m in missing)))
    from ansible_collections.ferry.kube.plugins.module_utils.kube import cloud_auth  # pylint: disable=import-outside-toplevel
    try:
        return cloud_auth.aks_token(dict(options, server_app_id=ACR_AAD_AUDIENCE), **credential_kwargs)
    except ClusterError as exc:
        if 'azure-identity' in str(exc) and 'pip install' in str(exc):
            raise RegistryError('Azure Container Registry needs the Python library azure-identity: pip install azure-identity') from None
        raise RegistryAuthError('cannot get an Azure AD token for the registry (%s.acr): %s' % (option, _cloud_detail(exc))) from None


def acr_credentials(options, host, option, request, **credential_kwargs):
    """An ACR refresh token: the Azure AD token exchanged at ``https://<registry>/oauth2/exchange``."""
    aad_token = azure_ad_token(options, option, **credential_kwargs)
    form = {'grant_type': 'access_token', 'service': host, 'access_token': aad_token}
    if options.get('tenant_id'):
        form['tenant'] = options['tenant_id']
    response = request('POST', 'https://%s/oauth2/exchange' % host, data=form)
    if response.status_code in (401, 403):
        raise RegistryAuthError('Azure Container Registry %s refused the Azure AD token at /oauth2/exchange (HTTP %d): the identity in '
                                '%s.acr needs a role on the registry (AcrPull to read, AcrPush to write)' % (host, response.status_code, option))
    if response.status_code != 200:
        raise RegistryError('Azure Container Registry %s answered HTTP %d to the token exchange: %s'
                            % (host, response.status_code, scrub(response.text[:300], [aad_token])))
    try:
        refresh = response.json()['refresh_token']
    except (ValueError, KeyError):
        raise RegistryError('Azure Container Registry %s answered the token exchange without a refresh_token' % host) from None
    creds = Credentials(ACR_REFRESH_USERNAME, None, refresh_token=refresh, kind='acr')
    creds.aad_token = aad_token
    return creds


def _first_line(exc):
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__
