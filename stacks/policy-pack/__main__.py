"""CrossGuard policy pack: the rules of `bascule stacks policy`, run by `pulumi preview`."""

from pulumi_policy import EnforcementLevel, PolicyPack

from bascule.stacks.crossguard import PACK_NAME, policies

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=policies())
