"""Authorization by the RBAC objects in the store, as the API server's RBAC authorizer does."""

SUPERUSER_GROUP = 'system:masters'


class User:
    def __init__(self, name, groups=()):
        self.name = name
        self.groups = list(groups) + ['system:authenticated']

    @classmethod
    def service_account(cls, namespace, name):
        return cls('system:serviceaccount:%s:%s' % (namespace, name),
                   ['system:serviceaccounts', 'system:serviceaccounts:%s' % namespace])

    def matches(self, subject, binding_namespace):
        kind = subject.get('kind')
        if kind == 'User':
            return subject.get('name') == self.name
        if kind == 'Group':
            return subject.get('name') in self.groups
        if kind == 'ServiceAccount':
            namespace = subject.get('namespace') or binding_namespace
            return self.name == 'system:serviceaccount:%s:%s' % (namespace, subject.get('name'))
        return False


def _rule_allows(rule, verb, group, resource, name):
    if '*' not in rule.get('verbs', []) and verb not in rule.get('verbs', []):
        return False
    if '*' not in rule.get('apiGroups', []) and group not in rule.get('apiGroups', []):
        return False
    resources = rule.get('resources', [])
    main = resource.split('/')[0]
    if '*' not in resources and resource not in resources and not ('%s/*' % main in resources and '/' in resource):
        return False
    names = rule.get('resourceNames')
    return not names or name in names


def rules_for(store, user, namespace):
    """Every policy rule that applies to ``user`` in ``namespace`` (cluster-wide ones included)."""
    rules = []

    def role_rules(ref, binding_namespace):
        if ref.get('kind') == 'ClusterRole':
            role = store.get_ref('rbac.authorization.k8s.io', 'clusterroles', None, ref.get('name'))
        else:
            role = store.get_ref('rbac.authorization.k8s.io', 'roles', binding_namespace, ref.get('name'))
        return (role or {}).get('rules') or []

    for binding in store.list_refs('rbac.authorization.k8s.io', 'clusterrolebindings'):
        if any(user.matches(s, None) for s in binding.get('subjects') or []):
            rules += role_rules(binding.get('roleRef') or {}, None)
    if namespace:
        for binding in store.list_refs('rbac.authorization.k8s.io', 'rolebindings', namespace):
            if any(user.matches(s, namespace) for s in binding.get('subjects') or []):
                rules += role_rules(binding.get('roleRef') or {}, namespace)
    return rules


def allowed(store, user, verb, group, resource, namespace=None, name=None):
    if SUPERUSER_GROUP in user.groups:
        return True
    return any(_rule_allows(rule, verb, group, resource, name) for rule in rules_for(store, user, namespace))


def forbidden_message(user, verb, group, resource, namespace, name=None):
    main, _sep, sub = resource.partition('/')
    what = 'resource "%s"' % main + (' with subresource "%s"' % sub if sub else '')
    where = ' in the namespace "%s"' % namespace if namespace else ' at the cluster scope'
    subject = '%s "%s"' % ('User', user.name)
    prefix = ('%s "%s" is forbidden' % (main, name)) if name else '%s is forbidden' % main
    return '%s: %s cannot %s %s in API group "%s"%s' % (prefix, subject, verb, what, group, where)
