"""The currencies a price or a charge may be in: the active codes of ISO 4217 (List One).

Shipped with the code rather than fetched: a service must validate the same way offline, and a
currency is added or withdrawn a few times a year, by an amendment of the standard. When one is,
edit the set here (and say which amendment in the commit).

As of the list published for 2025: funds codes (BOV, CHE, CHW, CLF, COU, MXV, USN, UYI, UYW),
precious metals and the other X codes (XAU, XDR, XTS for tests, XXX for "no currency") are in it,
as the standard has them. Codes in withdrawal during that year (ANG, replaced by XCG; BGN, by EUR)
are still accepted, since prices in them may still be asked for; long-gone ones (HRK, SLL, ZWL, CUC,
VEF, MRO, STD, BYR) are not.
"""

from __future__ import annotations

_LIST_ONE = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP
    BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR
    FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES
    KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR
    MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF
    SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS
    UAH UGX USD USN UYI UYU UYW UZS VED VES VND VUV WST XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF
    XPD XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
"""

ISO_4217: frozenset[str] = frozenset(_LIST_ONE.split())
