//! Unit tests of the wire facade: RFC 4475 torture messages, the pitfalls of
//! `notes/sip-stack.md`, edits, framing and a mutation fuzz.

use std::net::IpAddr;

use super::message::is_token_char;
use super::*;

/// Test messages are written with `\n`; SIP wants CRLF. `{CL}` becomes the body length.
fn wire(s: &str) -> Vec<u8> {
    let s = s.replace('\n', "\r\n");
    let body_len = s.find("\r\n\r\n").map_or(0, |i| s.len() - i - 4);
    s.replace("{CL}", &body_len.to_string()).into_bytes()
}

/// What the proxy does with a datagram: process it, answer with a status, or drop it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Process,
    Answer(u16),
    Drop,
}
use Outcome::{Answer, Drop, Process};

fn outcome(raw: &[u8]) -> Outcome {
    match SipMessage::parse_datagram(raw) {
        Err(WireError::BadRequest { status, .. }) => Answer(status),
        Err(WireError::Drop { .. }) => Drop,
        Ok(m) if m.is_request() => match validate_request(&m) {
            Ok(()) => Process,
            Err((status, _)) => Answer(status),
        },
        Ok(m) => match validate_response(&m) {
            Ok(()) => Process,
            Err(_) => Drop,
        },
    }
}

fn parse(s: &str) -> SipMessage {
    SipMessage::parse_datagram(&wire(s)).expect("test message parses")
}

const SDP: &str = "v=0
o=madoguchi 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 8
a=rtpmap:0 PCMU/8000
";

// ---- RFC 4475 §3.1.1: valid messages, modelled with our numbers --------------------

const WSINV: &str = r#"INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
TO :
 sip:0134001234@madoguchi.example.jp ;   tag    = 1918181833n
from   : "Otaru \"City\" Hall" <sip:0134009999@trunk.example.net>
  ;
  tag = 98asjd8
MaX-fOrWaRdS: 0068
Call-ID: wsinv.ndaksdj@192.0.2.1
Content-Length   : {CL}
cseq: 0009
  INVITE
Via  : SIP  /   2.0
 /UDP
    192.0.2.2;rport;branch=390skdjuw
s :
NewFangledHeader:   newfangled value
 continued newfangled value
UnknownHeaderWithUnusualValue: ;;,,;;,;
Content-Type: application/sdp
Route:
 <sip:madoguchi.example.jp;lr;unknownwith=value;unknown-no-value>
v:  SIP  / 2.0  / TCP     spindle.example.net   ;
  branch  =   z9hG4bK9ikj8  ,
 SIP  /    2.0   / UDP  192.168.255.111   ; branch=
 z9hG4bK30239
m:"Quoted string \"\"" <sip:0134009999@192.0.2.5> ; newparam =
      newvalue ;
  secondparam ; q = 0.33

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.3
s=-
c=IN IP4 192.0.2.4
t=0 0
m=audio 49217 RTP/AVP 0 12
m=video 3227 RTP/AVP 31
a=rtpmap:31 LPC
"#;

const INTMETH: &str = "!interesting-Method0123456789_*+`.%indeed'~ sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/TCP host1.example.net;branch=z9hG4bK-.!%66*_+`'~
To: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7F\" <sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*@madoguchi.example.jp>
From: token1~` token2'+_ token3*%!.- <sip:mundane@example.net>;fromParam''~+*_!.-%=\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\";tag=_token~1'+`*%!-.
Call-ID: intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{
Max-Forwards: 255
CSeq: 139122385 !interesting-Method0123456789_*+`.%indeed'~
extensionHeader-!.%*+_`'~: \u{feff}\u{5927}\u{505c}\u{96fb}
Content-Length: 0

";

const ESC01: &str = "INVITE sip:sips%3A0134001234%40example.net@madoguchi.example.jp SIP/2.0
To: sip:%61lice@madoguchi.example.jp
From: <sip:%61lice@madoguchi.example.jp>;tag=d3kx
Max-Forwards: 87
i: esc01.239409asdfakjkn23onasd0-3234
CSeq: 234234 INVITE
Via: SIP/2.0/UDP host5.example.net;rport;branch=z9hG4bKkdjuw
C: application/sdp
Contact:
  <sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%34%31>
Content-Length: {CL}

v=0
o=- 1 1 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 5000 RTP/AVP 0
";

const ESCNULL: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:null-%00-null@madoguchi.example.jp
From: sip:null-%00-null@madoguchi.example.jp;tag=839923423
Max-Forwards: 70
Call-ID: escnull.39203ndfvkjdasfkq3w4otrq0adsfdfnavd
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.net;rport;branch=z9hG4bKkdjuw
Contact: <sip:%00@host5.example.net>
Contact: <sip:%00%00@host5.example.net>
L:0

";

const ESC02: &str = "RE%47IST%45R sip:madoguchi.example.jp SIP/2.0
To: \"%Z%45\" <sip:resource@madoguchi.example.jp>
From: \"%Z%45\" <sip:resource@madoguchi.example.jp>;tag=f232jadfj23
Call-ID: esc02.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
Via: SIP/2.0/TCP host.example.net;rport;branch=z9hG4bK209%fzsnel234
CSeq: 29344 RE%47IST%45R
Max-Forwards: 70
Contact: <sip:alias1@host1.example.net>
C%6Fntact: <sip:alias2@host2.example.net>
Contact: <sip:alias3@host3.example.net>
l: 0

";

const LWSDISP: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: caller<sip:caller@example.net>;tag=323
Max-Forwards: 70
Call-ID: lwsdisp.1234abcd@funky.example.net
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP funky.example.net;branch=z9hG4bKkdjuw
l: 0

";

const DBLREQ: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:j.user@madoguchi.example.jp
From: sip:j.user@madoguchi.example.jp;tag=43251j3j324
Max-Forwards: 8
I: dblreq.0ha0isndaksdj99sdfafnl3lk233412
Contact: sip:j.user@host.example.net
CSeq: 8 REGISTER
Via: SIP/2.0/UDP 192.0.2.125;branch=z9hG4bKkdjuw23492
Content-Length: 0


INVITE sip:joe@madoguchi.example.jp SIP/2.0
t: sip:joe@madoguchi.example.jp
From: sip:caller@example.net;tag=141334
Max-Forwards: 8
Call-ID: dblreq.0ha0isnda977644900765@192.0.2.15
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bKkdjuw380234
Content-Type: application/sdp
Content-Length: 0

";

const SEMIURI: &str = "OPTIONS sip:0134001234;par=u%40example.net@madoguchi.example.jp SIP/2.0
To: sip:j_user@madoguchi.example.jp
From: sip:caller@example.net;tag=33242
Max-Forwards: 3
Call-ID: semiuri.0ha0isndaksdj
CSeq: 8 OPTIONS
Accept: application/sdp, application/pkcs7-mime,
        multipart/mixed, multipart/signed,
        message/sip, message/sipfrag
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKkdjuw
l: 0

";

const TRANSPORTS: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: <sip:caller@example.net>;tag=323
Max-Forwards: 70
Call-ID: transports.kijh4akdnaqjkwendsasfdj
Accept: application/sdp
CSeq: 60 OPTIONS
Via: SIP/2.0/UDP t1.example.net;branch=z9hG4bKkdjuw
Via: SIP/2.0/SCTP t2.example.net;branch=z9hG4bKklasjdhf
Via: SIP/2.0/TLS t3.example.net;branch=z9hG4bK2980unddj
Via: SIP/2.0/UNKNOWN t4.example.net;branch=z9hG4bKasd0f3en
Via: SIP/2.0/TCP t5.example.net;branch=z9hG4bK0a9idfnee
l: 0

";

const MPART01: &str = "MESSAGE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK3ef4a1
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=2k3hk
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: mpart01.0ha0isndaksdjweiafasdk3
CSeq: 1 MESSAGE
Content-Type: multipart/mixed;boundary=7a9cbec02ceef655
MIME-Version: 1.0
Content-Length: {CL}

--7a9cbec02ceef655
Content-Type: text/plain

予約の確認です
--7a9cbec02ceef655
Content-Type: application/octet-stream
Content-Transfer-Encoding: binary

0123456789
--7a9cbec02ceef655--
";

const UNREASON: &str = "SIP/2.0 200 = 2**3 * 5**2 \u{43d}\u{43e} \u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{43d}\u{43e}\u{441}\u{442}\u{43e} \u{434}\u{435}\u{432}\u{44f}\u{442}\u{44c} - \u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923
Call-ID: unreason.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:0134009999@trunk.example.net;tag=11141343
To: sip:0134001234@madoguchi.example.jp;tag=2229
Content-Length: 0

";

const NOREASON: &str = "SIP/2.0 100 
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: noreason.asndj203insdf99223ndf
CSeq: 35 INVITE
From: <sip:0134009999@trunk.example.net>;tag=39ansfi3
To: <sip:0134001234@madoguchi.example.jp>;tag=902jndnke3
Content-Length: 0

";

const IPV6: &str = "OPTIONS sip:[2001:db8::10]:5070 SIP/2.0
To: sip:0134001234@[2001:db8::10]
From: \"Desk 3\" <sip:desk3@[2001:db8::9]:5062>;tag=81x2
Via: SIP/2.0/UDP [2001:db8::9]:5062;rport;branch=z9hG4bKas3-111
Call-ID: ipv6.SSG9559905523997077@hlau_4100
Max-Forwards: 70
Contact: \"Desk 3\" <sip:desk3@[2001:db8::9]:5062>
CSeq: 98176 OPTIONS
Content-Length: 0

";

const UNKSCM: &str = "OPTIONS nobodyKnowsThisScheme:totallyopaquecontent SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: unkscm.nasdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.net;branch=z9hG4bKkdjuw39234
Content-Length: 0

";

const NOVELSC: &str = "OPTIONS soap.beep://192.0.2.103:3002 SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=384
Max-Forwards: 3
Call-ID: novelsc.asdfasser0q239nwsdfasdkl34
CSeq: 3923423 OPTIONS
Via: SIP/2.0/TCP host9.example.net;branch=z9hG4bKkdjuw39234
Content-Length: 0

";

const UNKSM2: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: isbn:2983792873
From: <http://www.example.net>;tag=3234233
Call-ID: unksm2.daksdj@hyphenated-host.example.net
CSeq: 234902 REGISTER
Max-Forwards: 70
Via: SIP/2.0/UDP 192.0.2.21:5060;branch=z9hG4bKkdjuw
Contact: <name:John_Smith>
l: 0

";

const BEXT01: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=242etr
Max-Forwards: 6
Call-ID: bext01.0ha0isndaksdj
Require: nothingSupportsThis, nothingSupportsThisEither
Proxy-Require: noProxiesSupportThis, norDoAnyProxiesSupportThis
CSeq: 8 OPTIONS
Via: SIP/2.0/TLS fold-and-staple.example.net;branch=z9hG4bKkdjuw
Content-Length: 0

";

const INVUT: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Contact: <sip:caller@host5.example.net>
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=8392034
Max-Forwards: 70
Call-ID: invut.0ha0isndaksdjadsfij34n23d
CSeq: 235448 INVITE
Via: SIP/2.0/UDP somehost.example.net;branch=z9hG4bKkdjuw
Content-Type: application/unknownformat
Content-Length: {CL}

<audio>
 <pcmu port=\"443\"/>
</audio>
";

const REGAUT01: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:desk3@madoguchi.example.jp
From: sip:desk3@madoguchi.example.jp;tag=8ty6tt
Call-ID: regaut01.0ha0isndaksdj
CSeq: 9338 REGISTER
Via: SIP/2.0/UDP 192.0.2.253;branch=z9hG4bKkdjuw
Max-Forwards: 70
Authorization: NoOneKnowsThisScheme opaque-data=here
Content-Length: 0

";

const BCAST: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.198;branch=z9hG4bK1324923;received=255.255.255.255
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1324923
Call-ID: bcast.1234ksdfak3j2erwedfsASdf
CSeq: 35 INVITE
From: sip:0134009999@trunk.example.net;tag=11141343
To: sip:0134001234@madoguchi.example.jp;tag=2229
Content-Length: {CL}
Content-Type: application/sdp
Contact: <sip:desk3@192.0.2.198>

v=0
o=- 3 3 IN IP4 192.0.2.198
s=-
c=IN IP4 192.0.2.198
t=0 0
m=audio 3456 RTP/AVP 0
";

const ZEROMF: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Call-ID: zeromf.0ha0isndaksdj@192.0.2.1
CSeq: 0 OPTIONS
Via: SIP/2.0/UDP host1.example.net;branch=z9hG4bKkdjuw2395
From: sip:caller@example.net;tag=3ghsd41
To: sip:0134001234@madoguchi.example.jp
Max-Forwards: 0
Content-Length: 0

";

const CPARAM01: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP saturn.example.net:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@madoguchi.example.jp;tag=DkfVgjkrtMwaerKKpe
To: sip:watson@madoguchi.example.jp
Call-ID: cparam01.70710@saturn.example.net
CSeq: 2 REGISTER
Contact: sip:+81134001234@gw1.example.net;unknownparam
l: 0

";

const CPARAM02: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP saturn.example.net:5060;branch=z9hG4bKkdjuw
Max-Forwards: 70
From: sip:watson@madoguchi.example.jp;tag=838293
To: sip:watson@madoguchi.example.jp
Call-ID: cparam02.70710@saturn.example.net
CSeq: 3 REGISTER
Contact: <sip:+81134001234@gw1.example.net;unknownparam>
l: 0

";

const REGESCRT: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:desk3@madoguchi.example.jp
From: <sip:desk3@madoguchi.example.jp>;tag=8
Max-Forwards: 70
Call-ID: regescrt.k345asrl3fdbv@192.0.2.1
CSeq: 14398234 REGISTER
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bKkdjuw
M: <sip:desk3@example.net?Route=%3Csip:sip.example.net%3E>
L:0

";

const INV2543: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.15
From: <sip:0134009999@trunk.example.net>
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: inv2543.1717@trunk.example.net
CSeq: 1 INVITE
Content-Type: application/sdp
Content-Length: {CL}

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.5
s=-
c=IN IP4 192.0.2.5
t=0 0
m=audio 49217 RTP/AVP 0
";

const BADBRANCH: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=3ghsd41
Call-ID: badbranch.sadonfo23i420jv0as0derf3j3n
CSeq: 8 OPTIONS
Via: SIP/2.0/UDP 192.0.2.15;branch=z9hG4bK
Max-Forwards: 70
Content-Length: 0

";

const ROUTES: &str = "INVITE sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01
Route: <sip:madoguchi.example.jp;lr>, <sip:b.example.net;lr>
Record-Route: <sip:sbc.example.net;lr>
Route: <sip:c.example.net;lr;transport=tcp>
Max-Forwards: 69
From: \"0134-00-9999\" <sip:0134009999@trunk.example.net>;tag=tr1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: routes.a1b2c3@198.51.100.7
CSeq: 101 INVITE
Content-Length: 0

";

const TELURI: &str = "INVITE tel:0134-00-1234;phone-context=+81-134 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bKtel01
Max-Forwards: 70
From: <tel:090-0000-1111;phone-context=+81>;tag=t1
To: <tel:0134-00-1234;phone-context=+81-134>
Call-ID: teluri.88a7@198.51.100.7
CSeq: 1 INVITE
Content-Length: 0

";

const NOCL: &str = "MESSAGE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKnocl
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=nc1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: nocl.1@198.51.100.7
CSeq: 1 MESSAGE
Content-Type: text/plain

hello
world
";

const FOLDED: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKfold,
\t SIP/2.0/UDP 198.51.100.8;branch=z9hG4bKfold2
Max-Forwards:\t70
From:\t<sip:0134009999@trunk.example.net>
\t;tag=fold1
To:<sip:0134001234@madoguchi.example.jp>
Subject   :\t  predicted
 folded
\t subject
Call-ID:folded.1@198.51.100.7
CSeq:   7    OPTIONS
Content-Length:0

";

const COMPACT180: &str = "SIP/2.0 180 Ringing
v: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.1
v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01;received=198.51.100.7
f: \"0134-00-9999\" <sip:0134009999@trunk.example.net>;tag=tr1
t: <sip:0134001234@madoguchi.example.jp>;tag=desk3a
i: compact.a1b2c3@198.51.100.7
CSeq: 101 INVITE
m: <sip:desk3@192.0.2.40:5062>
l: 0

";

fn long_request() -> String {
    let tag = "t".repeat(1000);
    let mut s = format!(
        "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0\n\
             To: \"{dn}\" <sip:0134001234@madoguchi.example.jp>\n\
             From: <sip:0134009999@trunk.example.net>;tag={tag}\n\
             Call-ID: longreq.{cid}\n\
             CSeq: 17 INVITE\n\
             Max-Forwards: 70\n\
             X-Unknown-Long: {x}\n",
        dn = "窓口".repeat(200),
        cid = "c".repeat(2000),
        x = "x".repeat(4000),
    );
    for i in 0..40 {
        s.push_str(&format!(
            "Via: SIP/2.0/TCP sip{i}.example.net;branch=z9hG4bK{i:03}{}\n",
            "b".repeat(100)
        ));
    }
    s.push_str("Content-Length: 0\n\n");
    s
}

// ---- RFC 4475 §3.1.2 (and §3.3): invalid messages ---------------------------------

const BADINV01: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=134161461246
Max-Forwards: 7
Call-ID: badinv01.0ha0isndaksdjasdf3234nas
CSeq: 8 INVITE
Via: SIP/2.0/UDP 192.0.2.15;;,;,,
Contact: \"Joe\" <sip:joe@example.net>;;;;
Content-Length: 0

";

const CLERR: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Max-Forwards: 80
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=93942939o2
Contact: <sip:caller@hungry.example.net>
Call-ID: clerr.0ha0isndaksdjweiafasdk3
CSeq: 8 INVITE
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK-39234-23523
Content-Type: application/sdp
Content-Length: 9999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.155
";

const CLERR_RESPONSE: &str = "SIP/2.0 200 OK
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.0
From: <sip:0134009999@trunk.example.net>;tag=tr1
To: <sip:0134001234@madoguchi.example.jp>;tag=d3
Call-ID: clerr-resp.1@198.51.100.7
CSeq: 101 INVITE
Content-Length: 9999

v=0
";

const NCL: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Max-Forwards: 254
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=32394234
Call-ID: ncl.0ha0isndaksdj2193423r542w35
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.53;branch=z9hG4bKkdjuw
Contact: <sip:caller@example53.example.net>
Content-Type: application/sdp
Content-Length: -999

v=0
o=mhandley 29739 7272939 IN IP4 192.0.2.53
";

const GARBAGE_CL: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKgcl
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=g1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: garbagecl.1@198.51.100.7
CSeq: 1 OPTIONS
l: 3x

abc";

const MCL01: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP host5.example.net;branch=z9hG4bK293423
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=3543j4
Call-ID: mcl01.0ha0isndaksdj2193423r542w35
CSeq: 2 OPTIONS
Max-Forwards: 70
Content-Length: 0
Content-Length: 0
l: 0

";

const SCALAR02: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
Via: SIP/2.0/TCP host129.example.net;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:desk3@madoguchi.example.jp>
From: <sip:desk3@madoguchi.example.jp>;tag=239232jh3
CSeq: 36893488147419103232 REGISTER
Call-ID: scalar02.23o0pd9vanlq3wnrlnewofjas9ui32
Max-Forwards: 300
Expires: 1000000000000000000000000000000000000000000000000000000000000
Contact: <sip:desk3@host129.example.net>
  ;expires=280297596632815
Content-Length: 0

";

const SCALARLG: &str = "SIP/2.0 503 Service Unavailable
Via: SIP/2.0/TCP host129.example.net;branch=z9hG4bKzzxdiwo34sw;received=192.0.2.129
To: <sip:0134001234@madoguchi.example.jp>
From: <sip:0134009999@trunk.example.net>;tag=2easdjfejw
CSeq: 9292394834772304023312 OPTIONS
Call-ID: scalarlg.noase0of0234hn2qofoaf0232aewf2394r
Retry-After: 949302838503028349304023988
Warning: 1812 overture \"In Progress\"
Content-Length: 0

";

const QUOTBAL: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
To: \"Mr. J. User <sip:j.user@madoguchi.example.jp>
From: sip:caller@example.net;tag=93334
Max-Forwards: 10
Call-ID: quotbal.aksdj
Contact: <sip:caller@host59.example.net>
CSeq: 0 INVITE
Via: SIP/2.0/UDP 192.0.2.59:5050;branch=z9hG4bKkdjuw39234
Content-Type: application/sdp
Content-Length: 0

";

const LTGTRURI: &str = "INVITE <sip:0134001234@madoguchi.example.jp> SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=39291
Max-Forwards: 23
Call-ID: ltgtruri.1@192.0.2.5
CSeq: 1 INVITE
Via: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKkdjuw
Content-Length: 0

";

const LWSRURI: &str = "INVITE sip:0134001234@madoguchi.example.jp; lr SIP/2.0
To: sip:0134001234@madoguchi.example.jp;tag=3xfe-9921883-z9f
From: sip:caller@example.net;tag=231413434
Max-Forwards: 5
Call-ID: lwsruri.asdfnqwo34rq23i34jrjasdcnl23nrlknsdf
CSeq: 2130706432 INVITE
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKkdjuw2395
Content-Length: 0

";

const LWSSTART: &str = "INVITE  sip:0134001234@madoguchi.example.jp  SIP/2.0
Max-Forwards: 8
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=8814
Call-ID: lwsstart.dfknq234oi243099adsdfnawe3@example.net
CSeq: 1893884 INVITE
Via: SIP/2.0/UDP host1.example.net;branch=z9hG4bKkdjuw3923
Content-Length: 0

";

const TRWS: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0 
Max-Forwards: 1
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=2342
Call-ID: trws.oij4asdfnq234ndfaj2kj3f
CSeq: 1 OPTIONS
Via: SIP/2.0/UDP host1.example.net;branch=z9hG4bK299342093
Content-Length: 0

";

const ESCRURI: &str =
    "INVITE sip:0134001234@madoguchi.example.jp?Route=%3Csip:example.net%3E SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=341518
Max-Forwards: 7
Contact: <sip:caller@host39923.example.net>
Call-ID: escruri.23940-asdfhj-aje3br-234q098w-fawerh2q-h4n5
CSeq: 39234321 INVITE
Via: SIP/2.0/UDP host1.example.net;branch=z9hG4bKkdjuw2349i
Content-Length: 0

";

const BADDATE: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=2234923
Max-Forwards: 70
Call-ID: baddate.239423mnsadf3j23lj42--sedfnm234
CSeq: 1392934 INVITE
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Date: Fri, 01 Jan 2010 16:00:00 EST
Contact: <sip:caller@host5.example.net>
Content-Length: 0

";

const REGBADCT: &str = "REGISTER sip:madoguchi.example.jp SIP/2.0
To: sip:desk3@madoguchi.example.jp
From: sip:desk3@madoguchi.example.jp;tag=998332
Max-Forwards: 70
Call-ID: regbadct.k345asrl3fdbv@10.0.0.1
CSeq: 1 REGISTER
Via: SIP/2.0/UDP 135.180.130.133:5060;branch=z9hG4bKkdjuw
Contact: sip:desk3@example.net?Route=%3Csip:sip.example.net%3E
l: 0

";

const BADASPEC: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP host4.example.net:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: \"Bell, Alexander\" <sip:a.g.bell@example.net>;tag=433423
To: \"Watson, Thomas\" < sip:t.watson@madoguchi.example.jp >
Call-ID: badaspec.sdf0234n2nds0a099u23h3hnnw009cdkne3
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

";

const BADDN: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP host4.example.net:5060;branch=z9hG4bKkdju43234
Max-Forwards: 70
From: Bell, Alexander <sip:a.g.bell@example.net>;tag=43
To: Watson, Thomas <sip:t.watson@madoguchi.example.jp>
Call-ID: baddn.31415@c.example.net
Accept: application/sdp
CSeq: 3923239 OPTIONS
l: 0

";

const BADVERS: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/7.0
Max-Forwards: 70
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=3ghsd41
Call-ID: badvers.0ha0isndaksdj
CSeq: 8 OPTIONS
Via: SIP/7.0/UDP 192.0.2.99;branch=z9hG4bKkdjuw
l: 0

";

const MISMATCH01: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch01.sadonfo23i420jv0as0derf3j3n
CSeq: 8 INVITE
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
l: 0

";

const MISMATCH02: &str = "NEWMETHOD sip:0134001234@madoguchi.example.jp SIP/2.0
To: sip:0134001234@madoguchi.example.jp
From: sip:caller@example.net;tag=34525
Max-Forwards: 6
Call-ID: mismatch02.sadonfo23i420jv0as0derf3j3n
CSeq: 8 INVITE
Contact: <sip:caller@host.example.net>
Via: SIP/2.0/UDP host.example.net;branch=z9hG4bKkdjuw
Content-Type: application/sdp
l: 0

";

const BIGCODE: &str = "SIP/2.0 4294967301 better not break the receiver
Via: SIP/2.0/UDP 192.0.2.105;branch=z9hG4bK2398ndaoe
Call-ID: bigcode.asdof3uj203asdnf3429uasdhfas3ehjasdfas9i
CSeq: 353494 INVITE
From: <sip:0134009999@trunk.example.net>;tag=39ansfi3
To: <sip:0134001234@madoguchi.example.jp>;tag=902jndnke3
Content-Length: 0

";

const INSUF: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
CSeq: 193942 INVITE
Via: SIP/2.0/UDP 192.0.2.95;branch=z9hG4bKkdj.insuf
Content-Type: application/sdp
l: 0

";

const MULTI01: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.25;branch=z9hG4bKkdjuw
Max-Forwards: 70
CSeq: 5 INVITE
Call-ID: multi01.98asdh@192.0.2.1
CSeq: 59 INVITE
Call-ID: multi01.98asdh@192.0.2.2
From: sip:caller@example.net;tag=3413415
To: sip:0134001234@madoguchi.example.jp
To: sip:0134009999@madoguchi.example.jp
From: sip:caller@example.net;tag=2342354
Content-Length: 0

";

const NEGMF: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKnegmf
Max-Forwards: -1
From: <sip:0134009999@trunk.example.net>;tag=n1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: negmf.1@198.51.100.7
CSeq: 1 OPTIONS
Content-Length: 0

";

const GARBAGEMF: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKgmf
Max-Forwards: seventy
From: <sip:0134009999@trunk.example.net>;tag=g1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: garbagemf.1@198.51.100.7
CSeq: 1 OPTIONS
Content-Length: 0

";

const NOVIA: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=nv1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: novia.1@198.51.100.7
CSeq: 1 OPTIONS
Content-Length: 0

";

const CSEQ_NO_METHOD: &str = "OPTIONS sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKcsq
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=c1
To: <sip:0134001234@madoguchi.example.jp>
Call-ID: cseqnomethod.1@198.51.100.7
CSeq: 1
Content-Length: 0

";

const UNTERMINATED_FROM: &str = "BYE sip:desk3@192.0.2.40:5062 SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKuq
Max-Forwards: 70
From: \"0134-00-9999 <sip:0134009999@trunk.example.net>;tag=u1
To: <sip:0134001234@madoguchi.example.jp>;tag=d3
Call-ID: unterminated.1@198.51.100.7
CSeq: 2 BYE
Content-Length: 0

";

const RESPONSE_NO_CALLID: &str = "SIP/2.0 486 Busy Here
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.0
From: <sip:0134009999@trunk.example.net>;tag=tr1
To: <sip:0134001234@madoguchi.example.jp>;tag=d3
CSeq: 101 INVITE
Content-Length: 0

";

const NO_COLON: &str = "INVITE sip:0134001234@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKnocolon
Max-Forwards: 70
From: <sip:0134009999@trunk.example.net>;tag=nc1
To: <sip:0134001234@madoguchi.example.jp>
This line is not a header
Call-ID: nocolon.1@198.51.100.7
CSeq: 1 INVITE
Content-Length: 0

";

/// Name, message, and what RFC 4475 (or RFC 3261) says our proxy does with it.
const CASES: &[(&str, &str, Outcome)] = &[
    // §3.1.1 valid
    ("3.1.1.1 wsinv", WSINV, Process),
    ("3.1.1.2 intmeth", INTMETH, Process),
    ("3.1.1.3 esc01", ESC01, Process),
    ("3.1.1.4 escnull", ESCNULL, Process),
    ("3.1.1.5 esc02", ESC02, Process),
    ("3.1.1.6 lwsdisp", LWSDISP, Process),
    ("3.1.1.8 dblreq", DBLREQ, Process),
    ("3.1.1.9 semiuri", SEMIURI, Process),
    ("3.1.1.10 transports", TRANSPORTS, Process),
    ("3.1.1.11 mpart01", MPART01, Process),
    ("3.1.1.12 unreason", UNREASON, Process),
    ("3.1.1.13 noreason", NOREASON, Process),
    // §3.2 / §3.3 / §3.4 valid, and our own odd-but-valid traffic
    ("3.2.1 badbranch", BADBRANCH, Process),
    ("3.3.2 unkscm", UNKSCM, Process),
    ("3.3.3 novelsc", NOVELSC, Process),
    ("3.3.4 unksm2", UNKSM2, Process),
    ("3.3.5 bext01", BEXT01, Process),
    ("3.3.6 invut", INVUT, Process),
    ("3.3.7 regaut01", REGAUT01, Process),
    ("3.3.10 bcast", BCAST, Process),
    ("3.3.11 zeromf", ZEROMF, Process),
    ("3.3.12 cparam01", CPARAM01, Process),
    ("3.3.13 cparam02", CPARAM02, Process),
    ("3.3.14 regescrt", REGESCRT, Process),
    ("3.4.1 inv2543", INV2543, Process),
    ("ipv6 request-uri and via", IPV6, Process),
    ("combined and repeated Route", ROUTES, Process),
    ("tel request-uri", TELURI, Process),
    ("udp without content-length", NOCL, Process),
    ("tabs, folds, no space after colon", FOLDED, Process),
    ("compact 180", COMPACT180, Process),
    // §3.1.2 invalid
    ("3.1.2.1 badinv01", BADINV01, Answer(400)),
    ("3.1.2.2 clerr", CLERR, Answer(400)),
    ("3.1.2.2 clerr as a response", CLERR_RESPONSE, Drop),
    ("3.1.2.3 ncl", NCL, Answer(400)),
    ("garbage content-length", GARBAGE_CL, Answer(400)),
    ("3.1.2.4 scalar02", SCALAR02, Answer(400)),
    ("3.1.2.5 scalarlg", SCALARLG, Drop),
    ("3.1.2.6 quotbal", QUOTBAL, Answer(400)),
    ("3.1.2.7 ltgtruri", LTGTRURI, Answer(400)),
    ("3.1.2.8 lwsruri", LWSRURI, Answer(400)),
    ("3.1.2.9 lwsstart", LWSSTART, Answer(400)),
    ("3.1.2.10 trws", TRWS, Answer(400)),
    ("3.1.2.11 escruri", ESCRURI, Answer(400)),
    ("3.1.2.12 baddate", BADDATE, Process),
    ("3.1.2.13 regbadct", REGBADCT, Answer(400)),
    ("3.1.2.14 badaspec", BADASPEC, Answer(400)),
    ("3.1.2.15 baddn", BADDN, Answer(400)),
    ("3.1.2.16 badvers", BADVERS, Answer(505)),
    ("3.1.2.17 mismatch01", MISMATCH01, Answer(400)),
    ("3.1.2.18 mismatch02", MISMATCH02, Answer(400)),
    ("3.1.2.19 bigcode", BIGCODE, Drop),
    ("3.3.1 insuf", INSUF, Answer(400)),
    ("3.3.8 multi01", MULTI01, Answer(400)),
    ("3.3.9 mcl01", MCL01, Answer(400)),
    ("negative max-forwards", NEGMF, Answer(400)),
    ("garbage max-forwards", GARBAGEMF, Answer(400)),
    ("missing via", NOVIA, Answer(400)),
    ("cseq without method", CSEQ_NO_METHOD, Answer(400)),
    ("unterminated quote in from", UNTERMINATED_FROM, Answer(400)),
    ("response without call-id", RESPONSE_NO_CALLID, Drop),
    ("header line without colon", NO_COLON, Answer(400)),
];

#[test]
fn every_case_gets_what_the_rfc_asks_of_a_proxy() {
    let mut failures = Vec::new();
    for (name, text, want) in CASES {
        let got = outcome(&wire(text));
        if got != *want {
            failures.push(format!("{name}: want {want:?}, got {got:?}"));
        }
    }
    assert!(CASES.len() >= 40);
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn long_values_parse_and_round_trip() {
    let raw = wire(&long_request());
    assert_eq!(outcome(&raw), Process);
    let m = SipMessage::parse_datagram(&raw).unwrap();
    assert_eq!(m.via_count(), 40);
    assert_eq!(m.from_tag().unwrap().len(), 1000);
    assert_eq!(m.call_id().unwrap().len(), "longreq.".len() + 2000);
    assert_eq!(m.to_bytes().as_ref(), raw.as_slice());
}

#[test]
fn processed_messages_round_trip_byte_for_byte() {
    for (name, text, want) in CASES {
        if *want != Process || *name == "3.1.1.8 dblreq" {
            continue;
        }
        let raw = wire(text);
        let m = SipMessage::parse_datagram(&raw).unwrap();
        assert_eq!(m.to_bytes().as_ref(), raw.as_slice(), "{name}");
    }
}

#[test]
fn bad_requests_are_answered_from_what_they_carried() {
    for (name, text, want) in CASES {
        let Answer(status) = *want else { continue };
        let raw = wire(text);
        let resp = match SipMessage::parse_datagram(&raw) {
            Err(WireError::BadRequest { response, .. }) => *response,
            Err(WireError::Drop { cause }) => panic!("{name}: dropped ({cause})"),
            Ok(req) => {
                let (s, reason) = validate_request(&req).unwrap_err();
                assert_eq!(s, status, "{name}");
                SipMessage::response_to(&req, s, reason, Some("mdg400"))
            }
        };
        assert_eq!(resp.status(), Some(status), "{name}");
        if ["missing via", "3.1.2.1 badinv01"].contains(name) {
            // No usable Via: the transport answers the packet's source or drops it.
            assert!(resp.top_via().is_none(), "{name}");
            continue;
        }
        let again = SipMessage::parse_datagram(&resp.to_bytes()).unwrap();
        assert!(
            again.top_via().is_some(),
            "{name}: the 400 must be routable"
        );
        let original = String::from_utf8_lossy(&raw).into_owned();
        let via = again.headers_all("Via");
        assert!(original.contains(via[0].as_str()), "{name}: Via copied");
        if let Some(cid) = again.call_id() {
            assert!(original.contains(&cid), "{name}: Call-ID copied");
        }
    }
}

// ---- Field checks on the valid messages ----------------------------------------------

#[test]
fn tortuous_invite_reads_right() {
    let m = parse(WSINV);
    assert_eq!(m.method(), Some("INVITE"));
    assert_eq!(m.call_id().as_deref(), Some("wsinv.ndaksdj@192.0.2.1"));
    assert_eq!(m.cseq(), Some((9, "INVITE".to_owned())));
    assert_eq!(m.max_forwards(), Some(68));
    assert_eq!(m.to_tag().as_deref(), Some("1918181833n"));
    assert_eq!(m.from_tag().as_deref(), Some("98asjd8"));
    let top = m.top_via().unwrap();
    assert_eq!(top.host, "192.0.2.2");
    assert_eq!(top.branch.as_deref(), Some("390skdjuw"));
    assert_eq!(top.rport, RPort::Requested);
    assert!(!top.is_rfc3261());
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[1].transport, "TCP");
    assert_eq!(vias[2].branch.as_deref(), Some("z9hG4bK30239"));
    let routes = m.routes().unwrap();
    assert_eq!(routes.len(), 1);
    assert!(routes[0].is_loose_route());
    assert_eq!(routes[0].param("unknownwith"), Some(Some("value")));
    assert_eq!(
        uri::display_name(&m.header("from").unwrap()).as_deref(),
        Some("Otaru \"City\" Hall")
    );
    assert_eq!(
        m.header("newfangledheader").as_deref(),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(m.header("Contact"), m.header("m"));
    assert_eq!(m.header("subject").as_deref(), Some(""));
    assert!(m.body().starts_with(b"v=0\r\n"));
    assert!(m.body().ends_with(b"LPC\r\n"));
}

#[test]
fn unusual_method_and_uri_characters_are_kept() {
    let m = parse(INTMETH);
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(m.method(), Some(method));
    assert_eq!(m.cseq().unwrap().1, method);
    assert_eq!(m.max_forwards(), Some(255));
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.host, "madoguchi.example.jp");
    assert!(ruri.user.unwrap().starts_with("1_unusual.URI~(to-be!sure)"));
    assert_eq!(m.from_tag().as_deref(), Some("_token~1'+`*%!-."));
    // A To with raw control characters cannot take a tag (we never write NUL)...
    let resp = SipMessage::response_to(&m, 501, "Not Implemented", Some("x1"));
    assert_eq!(resp.to_tag(), None);
    // ...but the copied row is byte-exact, so the UAC still matches the response.
    let raw = wire(INTMETH);
    let to_line = raw
        .split(|&b| b == b'\n')
        .find(|l| l.starts_with(b"To:"))
        .unwrap();
    let resp_bytes = resp.to_bytes();
    assert!(resp_bytes.windows(to_line.len()).any(|w| w == to_line));
}

#[test]
fn escaped_uris_stay_escaped_until_asked() {
    let m = parse(ESC01);
    let ruri = m.request_uri().unwrap();
    assert_eq!(
        ruri.user.as_deref(),
        Some("sips%3A0134001234%40example.net")
    );
    assert_eq!(ruri.user_decoded().unwrap(), b"sips:0134001234@example.net");
    assert_eq!(
        uri::user_part(&m.header("To").unwrap()).as_deref(),
        Some("%61lice")
    );
    let null = parse(ESCNULL);
    let to_user = uri::name_addr_uri(&null.header("t").unwrap()).unwrap();
    assert_eq!(to_user.user_decoded().unwrap(), b"null-\0-null");
    assert_eq!(null.headers_all("Contact").len(), 2);
    let e2 = parse(ESC02);
    assert_eq!(e2.method(), Some("RE%47IST%45R"));
    assert_ne!(e2.method(), Some("REGISTER"));
    // `C%6Fntact` is not Contact: escapes do not apply to header names.
    assert_eq!(e2.headers_all("Contact").len(), 2);
}

#[test]
fn display_name_without_space_and_semicolon_user() {
    let m = parse(LWSDISP);
    assert_eq!(
        uri::display_name(&m.header("From").unwrap()).as_deref(),
        Some("caller")
    );
    assert_eq!(m.from_tag().as_deref(), Some("323"));
    let s = parse(SEMIURI);
    let ruri = s.request_uri().unwrap();
    assert_eq!(ruri.user.as_deref(), Some("0134001234;par=u%40example.net"));
    assert_eq!(ruri.host, "madoguchi.example.jp");
    assert!(ruri.params.is_empty());
}

#[test]
fn trailing_octets_in_a_datagram_are_not_forwarded() {
    let raw = wire(DBLREQ);
    let m = SipMessage::parse_datagram(&raw).unwrap();
    assert_eq!(m.method(), Some("REGISTER"));
    assert!(m.body().is_empty());
    let out = m.to_bytes();
    assert!(out.len() < raw.len());
    assert!(!String::from_utf8_lossy(&out).contains("INVITE"));
}

#[test]
fn unknown_transports_and_schemes_parse() {
    let t = parse(TRANSPORTS);
    let kinds: Vec<String> = t
        .vias()
        .unwrap()
        .iter()
        .map(|v| v.transport.clone())
        .collect();
    assert_eq!(kinds, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    let u = parse(UNKSCM).request_uri().unwrap();
    assert_eq!(u.scheme, uri::Scheme::Other("nobodyknowsthisscheme".into()));
    assert_eq!(u.opaque.as_deref(), Some("totallyopaquecontent"));
    let n = parse(NOVELSC).request_uri().unwrap();
    assert_eq!(n.scheme, uri::Scheme::Other("soap.beep".into()));
    let tel = parse(TELURI).request_uri().unwrap();
    assert_eq!(tel.scheme, uri::Scheme::Tel);
    assert_eq!(tel.user.as_deref(), Some("0134-00-1234"));
    assert_eq!(tel.param("phone-context"), Some(Some("+81-134")));
    assert_eq!(tel.to_string(), "tel:0134-00-1234;phone-context=+81-134");
    assert_eq!(
        uri::user_part(&parse(TELURI).header("From").unwrap()).as_deref(),
        Some("090-0000-1111")
    );
}

#[test]
fn responses_with_odd_reasons() {
    let u = parse(UNREASON);
    assert_eq!(u.status(), Some(200));
    assert!(u.reason().unwrap().starts_with("= 2**3 * 5**2 но"));
    let n = parse(NOREASON);
    assert_eq!(n.status(), Some(100));
    assert_eq!(n.reason().as_deref(), Some(""));
    assert!(!n.is_request());
    assert_eq!(n.method(), None);
    let b = parse(BCAST);
    assert_eq!(
        b.top_via().unwrap().received.as_deref(),
        Some("255.255.255.255")
    );
}

#[test]
fn multipart_and_unknown_bodies_are_carried_whole() {
    let m = parse(MPART01);
    assert!(m.body().ends_with(b"--7a9cbec02ceef655--\r\n"));
    assert!(String::from_utf8_lossy(m.body()).contains("予約の確認です"));
    let u = parse(INVUT);
    assert_eq!(u.header("c").as_deref(), Some("application/unknownformat"));
    assert!(u.body().starts_with(b"<audio>"));
}

#[test]
fn udp_without_content_length_takes_the_rest_of_the_datagram() {
    let m = parse(NOCL);
    assert_eq!(m.body(), b"hello\r\nworld\r\n");
}

#[test]
fn ipv6_references_parse_everywhere() {
    let m = parse(IPV6);
    let ruri = m.request_uri().unwrap();
    assert_eq!(ruri.host, "[2001:db8::10]");
    assert_eq!(ruri.port, Some(5070));
    assert_eq!(ruri.host_ip(), Some("2001:db8::10".parse().unwrap()));
    let via = m.top_via().unwrap();
    assert_eq!(via.host, "[2001:db8::9]");
    assert_eq!(via.sent_by(), "[2001:db8::9]:5062");
    assert_eq!(via.response_target(), ("2001:db8::9".to_owned(), 5062));
    let from = uri::name_addr_uri(&m.header("From").unwrap()).unwrap();
    assert_eq!(from.host, "[2001:db8::9]");
    assert_eq!(from.port, Some(5062));
}

#[test]
fn headers_by_any_spelling() {
    let m = parse(COMPACT180);
    assert_eq!(m.header("Call-ID"), m.header("i"));
    assert_eq!(m.header("CALL-id"), m.header("I"));
    assert_eq!(m.headers_all("via").len(), 2);
    assert_eq!(m.headers_all("V").len(), 2);
    assert_eq!(m.header("x-absent"), None);
    let b = parse(BEXT01);
    assert_eq!(
        b.headers_all("proxy-require"),
        ["noProxiesSupportThis, norDoAnyProxiesSupportThis"]
    );
    let f = parse(FOLDED);
    assert_eq!(f.from_tag().as_deref(), Some("fold1"));
    assert_eq!(f.cseq(), Some((7, "OPTIONS".to_owned())));
    assert_eq!(f.via_count(), 2);
    assert_eq!(
        f.header("subject").as_deref(),
        Some("predicted folded subject")
    );
}

#[test]
fn value_level_faults_name_their_header() {
    let reason = |t: &str| validate_request(&parse(t)).unwrap_err();
    assert_eq!(reason(BADINV01), (400, "Malformed Via"));
    assert_eq!(reason(SCALAR02).0, 400);
    assert_eq!(reason(QUOTBAL), (400, "Malformed To"));
    assert_eq!(reason(ESCRURI), (400, "Request-URI Has Headers"));
    assert_eq!(reason(REGBADCT), (400, "Malformed Contact"));
    assert_eq!(reason(BADVERS), (505, "Version Not Supported"));
    assert_eq!(reason(MISMATCH01), (400, "CSeq Method Mismatch"));
    assert_eq!(reason(MISMATCH02), (400, "CSeq Method Mismatch"));
    assert_eq!(reason(NOVIA), (400, "Missing Via"));
    assert_eq!(reason(NEGMF), (400, "Malformed Max-Forwards"));
    assert_eq!(reason(CSEQ_NO_METHOD), (400, "Malformed CSeq"));
    assert_eq!(validate_response(&parse(SCALARLG)), Err("Malformed CSeq"));
}

#[test]
fn framing_faults_answer_400_with_the_request_headers() {
    for (text, reason) in [
        (CLERR, "Content-Length Exceeds Body"),
        (NCL, "Bad Content-Length"),
        (GARBAGE_CL, "Bad Content-Length"),
        (MCL01, "Duplicate Content-Length"),
    ] {
        let raw = wire(text);
        let Err(WireError::BadRequest {
            status,
            reason: got,
            response,
        }) = SipMessage::parse_datagram(&raw)
        else {
            panic!("{reason}: expected BadRequest");
        };
        assert_eq!((status, got), (400, reason));
        let req_cid = String::from_utf8_lossy(&raw)
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: ").map(str::to_owned))
            .unwrap();
        assert_eq!(response.call_id().as_deref(), Some(req_cid.trim()));
        assert!(
            response.to_tag().is_some(),
            "§8.2.6.2: our 400 carries a To tag"
        );
        let bytes = error_response_for_unparseable(&raw).unwrap();
        assert!(bytes.starts_with(format!("SIP/2.0 400 {reason}\r\n").as_bytes()));
    }
    assert!(error_response_for_unparseable(&wire(CLERR_RESPONSE)).is_none());
    assert!(error_response_for_unparseable(&wire(ZEROMF)).is_none());
}

#[test]
fn garbage_and_truncation_are_dropped() {
    for raw in [
        &b""[..],
        b"\r\n\r\n",
        b"hello",
        b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\n",
        b"OPTIONS sip:x@y SIP/2.0\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\nCall-ID: a\n\n",
        b"\0\0\0\0\r\n\r\n",
    ] {
        assert_eq!(outcome(raw), Drop, "{:?}", String::from_utf8_lossy(raw));
    }
    assert!(matches!(
        SipMessage::parse_datagram(&vec![b'a'; MAX_DATAGRAM_BYTES + 1]),
        Err(WireError::Drop { .. })
    ));
}

// ---- Pitfall 1: header forms on the routing path ----------------------------------------

const COMBINED_VIA_RESPONSE: &str = "SIP/2.0 180 Ringing
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.1 , SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01;received=198.51.100.7
Via: SIP/2.0/TCP 198.51.100.3;branch=z9hG4bKsbc
From: <sip:0134009999@trunk.example.net>;tag=tr1
To: <sip:0134001234@madoguchi.example.jp>;tag=desk3a
Call-ID: combined.1@198.51.100.7
CSeq: 101 INVITE
Content-Length: 0

";

#[test]
fn pitfall1_combined_via_loses_only_our_value() {
    let mut m = parse(COMBINED_VIA_RESPONSE);
    let ours = m.top_via().unwrap();
    assert_eq!(
        branch::decode(ours.branch.as_deref().unwrap()),
        Some(branch::BranchId {
            slot: 0x2a,
            generation: 0x5f3e9c01,
            branch: 1
        })
    );
    assert!(m.pop_top_via_value());
    let out = String::from_utf8(m.to_bytes().to_vec()).unwrap();
    assert!(out.contains(
        "\r\nVia: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01;received=198.51.100.7\r\n"
    ));
    assert!(out.contains("\r\nVia: SIP/2.0/TCP 198.51.100.3;branch=z9hG4bKsbc\r\n"));
    assert!(!out.contains("z9hG4bKmdg1"));
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].branch.as_deref(), Some("z9hG4bKtrunk01"));
    // Everything but the edited row is untouched.
    let before = String::from_utf8(wire(COMBINED_VIA_RESPONSE)).unwrap();
    let untouched = before.split_once("Via: SIP/2.0/TCP").unwrap().1;
    assert!(out.ends_with(untouched));
    // A single-value row goes away entirely.
    assert!(m.pop_top_via_value());
    assert!(m.pop_top_via_value());
    assert_eq!(m.via_count(), 0);
    assert!(!m.pop_top_via_value());
}

#[test]
fn pitfall1_folded_combined_via_pops_cleanly() {
    let mut m = parse(FOLDED);
    assert!(m.pop_top_via_value());
    let top = m.top_via().unwrap();
    assert_eq!(top.branch.as_deref(), Some("z9hG4bKfold2"));
    assert_eq!(m.via_count(), 1);
    assert!(SipMessage::parse_datagram(&m.to_bytes()).is_ok());
}

#[test]
fn pitfall1_compact_via_in_a_response_matches_our_branch() {
    let m = parse(COMPACT180);
    assert_eq!(validate_response(&m), Ok(()));
    let id = branch::decode(&m.top_via().unwrap().branch.unwrap()).unwrap();
    assert_eq!((id.slot, id.generation, id.branch), (0x2a, 0x5f3e9c01, 1));
    assert_eq!(m.call_id().as_deref(), Some("compact.a1b2c3@198.51.100.7"));
    assert_eq!(m.to_tag().as_deref(), Some("desk3a"));
    assert_eq!(m.cseq(), Some((101, "INVITE".to_owned())));
}

#[test]
fn pitfall1_rfc2543_invite_gets_a_sensible_answer() {
    let m = parse(INV2543);
    assert_eq!(validate_request(&m), Ok(()));
    assert_eq!(m.max_forwards(), Some(70), "absent means 70");
    assert_eq!(m.from_tag(), None);
    let via = m.top_via().unwrap();
    assert_eq!(via.branch, None);
    assert!(!via.is_rfc3261());
    let r = SipMessage::response_to(&m, 486, "Busy Here", Some("mdgbusy"));
    let again = SipMessage::parse_datagram(&r.to_bytes()).unwrap();
    assert_eq!(again.status(), Some(486));
    assert_eq!(again.to_tag().as_deref(), Some("mdgbusy"));
    assert_eq!(
        again.header("Via").as_deref(),
        Some("SIP/2.0/UDP 192.0.2.15")
    );
    assert_eq!(again.call_id(), m.call_id());
    let mut fwd = m.clone();
    assert_eq!(fwd.decrement_max_forwards(), Ok(69));
    assert_eq!(fwd.header("Max-Forwards").as_deref(), Some("69"));
}

#[test]
fn pitfall1_unknown_method_is_a_method() {
    let m = parse(
        MISMATCH02
            .replace("CSeq: 8 INVITE", "CSeq: 8 NEWMETHOD")
            .as_str(),
    );
    assert_eq!(validate_request(&m), Ok(()));
    assert_eq!(m.method(), Some("NEWMETHOD"));
    let r = SipMessage::response_to(&m, 501, "Not Implemented", Some("t501"));
    assert_eq!(r.cseq(), Some((8, "NEWMETHOD".to_owned())));
}

// ---- Pitfall 2: framing ---------------------------------------------------------------

#[test]
fn pitfall2_stream_frames_at_any_split_and_keeps_earlier_messages() {
    let one = wire(ESC01);
    let two = wire(COMPACT180);
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(&one);
    stream.extend_from_slice(&two);
    for split in 0..=stream.len() {
        let mut f = StreamFramer::new();
        let (a, b) = stream.split_at(split);
        let mut got = f.push(a).messages;
        let rest = f.push(b);
        assert!(rest.error.is_none(), "split {split}");
        got.extend(rest.messages);
        assert_eq!(got.len(), 2, "split {split}");
        assert_eq!(got[0].to_bytes().as_ref(), one.as_slice());
        assert_eq!(got[1].to_bytes().as_ref(), two.as_slice());
        assert_eq!(f.take_keepalives(), 2);
        assert_eq!(f.pending_bytes(), 0);
    }
}

#[test]
fn pitfall2_stream_requires_content_length() {
    let mut f = StreamFramer::new();
    let mut bytes = wire(ZEROMF);
    bytes.extend_from_slice(&wire(NOCL));
    let frames = f.push(&bytes);
    assert_eq!(
        frames.messages.len(),
        1,
        "the good message before it survives"
    );
    let Some(WireError::BadRequest { status, reason, .. }) = frames.error else {
        panic!("expected a 400");
    };
    assert_eq!((status, reason), (400, "Missing Content-Length"));
    assert!(f.is_broken());
    assert!(matches!(
        f.push(&wire(ZEROMF)).error,
        Some(WireError::Drop { .. })
    ));
}

#[test]
fn pitfall2_stream_limits_and_bad_lengths() {
    let mut f = StreamFramer::with_limit(1024);
    let frames = f.push(&wire(&CLERR.replace("9999", "5000")));
    assert!(matches!(
        frames.error,
        Some(WireError::BadRequest { status: 413, .. })
    ));
    let mut f = StreamFramer::with_limit(1024);
    let frames = f.push(&vec![b'A'; 2000]);
    assert!(matches!(frames.error, Some(WireError::Drop { .. })));
    for bad in [NCL, MCL01, GARBAGE_CL] {
        let mut f = StreamFramer::new();
        assert!(matches!(
            f.push(&wire(bad)).error,
            Some(WireError::BadRequest { status: 400, .. })
        ));
    }
    let mut f = StreamFramer::new();
    let resp = wire(CLERR_RESPONSE).replace_ascii("Content-Length: 9999", "Content-Length: x");
    assert!(matches!(f.push(&resp).error, Some(WireError::Drop { .. })));
    // A body still in flight is not an error.
    let mut f = StreamFramer::new();
    let frames = f.push(&wire(CLERR));
    assert!(frames.messages.is_empty() && frames.error.is_none());
    assert!(f.pending_bytes() > 0);
}

trait ReplaceAscii {
    fn replace_ascii(&self, from: &str, to: &str) -> Vec<u8>;
}
impl ReplaceAscii for Vec<u8> {
    fn replace_ascii(&self, from: &str, to: &str) -> Vec<u8> {
        String::from_utf8_lossy(self).replace(from, to).into_bytes()
    }
}

// ---- Pitfall 4: CANCEL copied exactly ---------------------------------------------------

const FORKED_INVITE: &str = "INVITE sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0
Via: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.1;rport
v: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bKtrunk01;received=198.51.100.7
Route:   <sip:pbx-edge.example.net;lr> ,<sip:desk-gw.example.net;lr>
Max-Forwards: 69
f: \"0134-00-9999\"   <sip:0134009999@trunk.example.net;user=phone>;tag=tr1
t:<sip:0134001234@madoguchi.example.jp>
i: cancel.a1b2c3@198.51.100.7
CSeq: 101 INVITE
Contact: <sip:0134009999@198.51.100.7>
Content-Type: application/sdp
Content-Length: {CL}

v=0
";

fn line_of<'a>(text: &'a str, prefix: &str) -> &'a str {
    text.split("\r\n").find(|l| l.starts_with(prefix)).unwrap()
}

#[test]
fn pitfall4_cancel_copies_the_invite_headers_exactly() {
    let invite = parse(FORKED_INVITE);
    let cancel = SipMessage::cancel_for(&invite, Some(REASON_COMPLETED_ELSEWHERE)).unwrap();
    let text = String::from_utf8(cancel.to_bytes().to_vec()).unwrap();
    let inv = String::from_utf8(wire(FORKED_INVITE)).unwrap();
    assert!(text.starts_with("CANCEL sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0\r\n"));
    for prefix in ["Route:", "f:", "t:", "i:"] {
        assert!(
            text.contains(&format!("\r\n{}\r\n", line_of(&inv, prefix))),
            "{prefix} row copied byte for byte"
        );
    }
    assert_eq!(cancel.via_count(), 1, "top Via only");
    assert_eq!(
        cancel.header("Via").as_deref(),
        Some("SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKmdg1.2a.5f3e9c01.1;rport")
    );
    assert_eq!(cancel.cseq(), Some((101, "CANCEL".to_owned())));
    assert_eq!(cancel.max_forwards(), Some(70));
    assert_eq!(
        cancel.header("Reason").as_deref(),
        Some(REASON_COMPLETED_ELSEWHERE)
    );
    assert!(cancel.body().is_empty());
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    let back = SipMessage::parse_datagram(text.as_bytes()).unwrap();
    assert_eq!(validate_request(&back), Ok(()));
    assert_eq!(back.routes().unwrap().len(), 2);
    assert!(!text.contains("Contact"), "§9.1 copies no Contact");
}

#[test]
fn pitfall4_cancel_of_a_combined_top_via_takes_the_first_value_only() {
    let invite = parse(
        COMBINED_VIA_RESPONSE
            .replace("SIP/2.0 180 Ringing", "INVITE sip:desk3@192.0.2.40 SIP/2.0")
            .as_str(),
    );
    let cancel = SipMessage::cancel_for(&invite, None).unwrap();
    assert_eq!(cancel.via_count(), 1);
    assert_eq!(
        cancel.top_via().unwrap().branch.as_deref(),
        Some("z9hG4bKmdg1.2a.5f3e9c01.1")
    );
    assert_eq!(cancel.header("Reason"), None);
    assert!(SipMessage::cancel_for(&parse(COMPACT180), None).is_err());
}

#[test]
fn ack_for_a_non_2xx_takes_to_from_the_response() {
    let invite = parse(FORKED_INVITE);
    let mut busy = SipMessage::response_to(&invite, 486, "Busy Here", Some("d3busy"));
    assert!(busy.pop_top_via_value());
    let ack = SipMessage::ack_for_non2xx(&invite, &busy).unwrap();
    assert_eq!(ack.method(), Some("ACK"));
    assert_eq!(ack.request_uri_text(), invite.request_uri_text());
    assert_eq!(ack.to_tag().as_deref(), Some("d3busy"));
    assert_eq!(ack.from_tag().as_deref(), Some("tr1"));
    assert_eq!(ack.cseq(), Some((101, "ACK".to_owned())));
    assert_eq!(ack.via_count(), 1);
    assert_eq!(ack.top_via(), invite.top_via());
    assert_eq!(ack.routes().unwrap().len(), 2);
    assert_eq!(validate_request(&ack), Ok(()));
}

// ---- Proxy edits ------------------------------------------------------------------------

#[test]
fn received_and_rport_follow_rfc3581() {
    let src: IpAddr = "203.0.113.9".parse().unwrap();
    // rport requested: both stamped even when the host matches.
    let mut m = parse(ESC01);
    assert_eq!(m.set_received_rport(src, 40123), Ok(true));
    let v = m.top_via().unwrap();
    assert_eq!(v.received.as_deref(), Some("203.0.113.9"));
    assert_eq!(v.rport, RPort::Port(40123));
    assert_eq!(v.response_target(), ("203.0.113.9".to_owned(), 40123));
    // Same host, no rport: nothing to say.
    let mut same = parse(INV2543);
    assert_eq!(
        same.set_received_rport("192.0.2.15".parse().unwrap(), 5060),
        Ok(false)
    );
    assert_eq!(same.to_bytes().as_ref(), wire(INV2543).as_slice());
    // Different host, no rport: received only.
    let mut diff = parse(INV2543);
    assert_eq!(diff.set_received_rport(src, 5070), Ok(true));
    let v = diff.top_via().unwrap();
    assert_eq!(v.received.as_deref(), Some("203.0.113.9"));
    assert_eq!(v.rport, RPort::Absent);
    assert_eq!(v.response_target(), ("203.0.113.9".to_owned(), 5060));
    // Same host with rport: received is still added (RFC 3581 §4).
    let mut v6 = parse(IPV6);
    let ip6: IpAddr = "2001:db8::9".parse().unwrap();
    assert_eq!(v6.set_received_rport(ip6, 5062), Ok(true));
    assert_eq!(
        v6.header("Via").as_deref(),
        Some(
            "SIP/2.0/UDP [2001:db8::9]:5062;rport=5062;branch=z9hG4bKas3-111;received=2001:db8::9"
        )
    );
    // A stale received is replaced, and only the first value of a combined row changes.
    let mut c = parse(COMBINED_VIA_RESPONSE);
    assert_eq!(c.set_received_rport(src, 5060), Ok(true));
    let vias = c.vias().unwrap();
    assert_eq!(vias[0].received.as_deref(), Some("203.0.113.9"));
    assert_eq!(vias[1].received.as_deref(), Some("198.51.100.7"));
    assert_eq!(vias.len(), 3);
    let mut stale = parse(BCAST);
    assert_eq!(stale.set_received_rport(src, 5060), Ok(true));
    assert_eq!(
        stale.top_via().unwrap().received.as_deref(),
        Some("203.0.113.9")
    );
    assert_eq!(stale.headers_all("Via")[0].matches("received").count(), 1);
    // The tortuous spacing survives and stays parseable.
    let mut w = parse(WSINV);
    assert_eq!(w.set_received_rport(src, 1), Ok(true));
    assert_eq!(w.top_via().unwrap().rport, RPort::Port(1));
    assert!(SipMessage::parse_datagram(&w.to_bytes()).is_ok());
    assert_eq!(
        parse(NOVIA).set_received_rport(src, 1),
        Err(EditError::Missing("Via"))
    );
}

#[test]
fn max_forwards_reads_decrements_and_stops_at_zero() {
    let mut m = parse(WSINV);
    assert_eq!(m.decrement_max_forwards(), Ok(67));
    assert_eq!(m.header("max-forwards").as_deref(), Some("67"));
    let mut z = parse(ZEROMF);
    assert!(z.max_forwards_is_zero());
    assert!(z.decrement_max_forwards().is_err());
    assert_eq!(z.to_bytes().as_ref(), wire(ZEROMF).as_slice());
    let mut g = parse(GARBAGEMF);
    assert_eq!(g.max_forwards(), None);
    assert_eq!(
        g.decrement_max_forwards(),
        Err(EditError::Malformed("Max-Forwards"))
    );
    assert!(!g.max_forwards_is_zero());
}

#[test]
fn route_and_record_route_edits() {
    let mut m = parse(ROUTES);
    let hosts = |m: &SipMessage| -> Vec<String> {
        m.routes().unwrap().into_iter().map(|u| u.host).collect()
    };
    assert_eq!(
        hosts(&m),
        ["madoguchi.example.jp", "b.example.net", "c.example.net"]
    );
    assert_eq!(m.routes().unwrap()[2].transport().as_deref(), Some("tcp"));
    assert_eq!(m.remove_first_route(), Ok(true));
    assert_eq!(hosts(&m), ["b.example.net", "c.example.net"]);
    assert!(m
        .to_bytes()
        .windows(33)
        .any(|w| w == b"\r\nRoute: <sip:b.example.net;lr>\r\n"));
    m.add_record_route("sip:192.0.2.1:5060;transport=udp;lr")
        .unwrap();
    m.add_record_route("<sip:192.0.2.1:5061;transport=tcp;lr>")
        .unwrap();
    let rr = m.record_routes().unwrap();
    assert_eq!(rr.len(), 3);
    assert_eq!(rr[0].port, Some(5061));
    assert_eq!(rr[1].transport().as_deref(), Some("udp"));
    assert_eq!(rr[2].host, "sbc.example.net");
    assert!(m.add_record_route("<sip:bad host>").is_err());
    assert_eq!(m.remove_first_route(), Ok(true));
    assert_eq!(m.remove_first_route(), Ok(true));
    assert_eq!(m.remove_first_route(), Ok(false));
    assert!(SipMessage::parse_datagram(&m.to_bytes()).is_ok());
    let resp = parse(BCAST);
    assert!(resp.record_routes().unwrap().is_empty());
}

#[test]
fn request_uri_and_via_pushes() {
    let mut m = parse(WSINV);
    m.set_request_uri("sip:desk3@192.0.2.40:5062;transport=tcp")
        .unwrap();
    assert!(m
        .to_bytes()
        .starts_with(b"INVITE sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0\r\nTO :\r\n"));
    assert_eq!(m.request_uri().unwrap().transport().as_deref(), Some("tcp"));
    assert!(m.set_request_uri("sip:bad host").is_err());
    let ours = branch::encode(branch::BranchId {
        slot: 7,
        generation: 1,
        branch: 0,
    });
    m.push_via(&format!("SIP/2.0/TCP 192.0.2.1:5060;branch={ours};rport"))
        .unwrap();
    assert_eq!(m.top_via().unwrap().branch.as_deref(), Some(ours.as_str()));
    assert_eq!(m.via_count(), 4);
    assert!(m
        .push_via("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b")
        .is_err());
    assert!(m.push_via("garbage").is_err());
    assert!(m.push_via("SIP/2.0/UDP a\r\nX: injected").is_err());
    assert!(m.to_bytes().starts_with(b"INVITE sip:desk3@192.0.2.40:5062;transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP 192.0.2.1:5060;branch=z9hG4bKmdg1.7.1.0;rport\r\n"));
    assert_eq!(outcome(&m.to_bytes()), Process);
}

#[test]
fn responses_carry_what_rfc3261_8_2_6_copies() {
    let inv = parse(FORKED_INVITE);
    let mut r = SipMessage::response_to(&inv, 480, "Temporarily Unavailable", Some("mdg480"));
    r.add_header("Retry-After", "600").unwrap();
    r.add_header(
        "WWW-Authenticate",
        "Digest realm=\"otaru\", algorithm=SHA-256, nonce=\"a\"",
    )
    .unwrap();
    r.add_header(
        "WWW-Authenticate",
        "Digest realm=\"otaru\", algorithm=MD5, nonce=\"b\"",
    )
    .unwrap();
    r.add_header("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")
        .unwrap();
    r.add_header("Supported", "path, outbound").unwrap();
    let text = String::from_utf8(r.to_bytes().to_vec()).unwrap();
    assert!(text.starts_with("SIP/2.0 480 Temporarily Unavailable\r\n"));
    assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
    let back = SipMessage::parse_datagram(text.as_bytes()).unwrap();
    assert_eq!(validate_response(&back), Ok(()));
    assert_eq!(back.via_count(), 2, "every Via, in order");
    assert_eq!(back.vias().unwrap(), inv.vias().unwrap());
    assert_eq!(back.to_tag().as_deref(), Some("mdg480"));
    assert_eq!(back.from_tag().as_deref(), Some("tr1"));
    assert_eq!(back.call_id(), inv.call_id());
    assert_eq!(back.cseq(), Some((101, "INVITE".to_owned())));
    assert_eq!(back.headers_all("www-authenticate").len(), 2);
    assert_eq!(back.header("Retry-After").as_deref(), Some("600"));
    // An existing To tag is never replaced, and a bad status or reason cannot break the line.
    let again = SipMessage::response_to(&back, 999, "Bad\r\nInjected: 1", Some("other"));
    assert_eq!(again.to_tag().as_deref(), Some("mdg480"));
    assert_eq!(again.status(), Some(500));
    assert_eq!(again.reason().as_deref(), Some("BadInjected: 1"));
    // A 100 echoes Timestamp and may go without a tag.
    let mut with_ts = inv.clone();
    with_ts.add_header("Timestamp", "54").unwrap();
    let trying = SipMessage::response_to(&with_ts, 100, "Trying", None);
    assert_eq!(trying.header("Timestamp").as_deref(), Some("54"));
    assert_eq!(trying.to_tag(), None);
}

#[test]
fn generic_header_edits_refuse_framing_and_injection() {
    let mut m = parse(ROUTES);
    assert!(m.set_header("Content-Length", "5").is_err());
    assert!(m.set_header("l", "5").is_err());
    assert!(m.remove_header("content-length").is_err());
    assert!(m.set_header("Subject", "a\r\nVia: evil").is_err());
    assert!(m.set_header("Bad Name", "x").is_err());
    m.set_header("Max-Forwards", "10").unwrap();
    assert_eq!(m.max_forwards(), Some(10));
    assert_eq!(m.remove_header("Record-Route"), Ok(1));
    m.add_header_top("Route", "<sip:first.example.net;lr>")
        .unwrap();
    assert_eq!(m.routes().unwrap()[0].host, "first.example.net");
    m.set_body(
        Some("application/sdp"),
        SDP.replace('\n', "\r\n").as_bytes(),
    )
    .unwrap();
    let back = SipMessage::parse_datagram(&m.to_bytes()).unwrap();
    assert_eq!(back.body(), SDP.replace('\n', "\r\n").as_bytes());
    assert_eq!(
        back.header("Content-Type").as_deref(),
        Some("application/sdp")
    );
    let mut tagged = parse(ZEROMF);
    tagged.set_to_tag("abc").unwrap();
    assert_eq!(tagged.to_tag().as_deref(), Some("abc"));
    assert_eq!(
        tagged.set_to_tag("def"),
        Err(EditError::AlreadySet("To tag"))
    );
    assert_eq!(
        parse(ZEROMF).set_to_tag("a b"),
        Err(EditError::InvalidValue("tag"))
    );
}

// ---- uri, branch, ids --------------------------------------------------------------------

#[test]
fn uris_parse_and_write_back() {
    for text in [
        "sip:0134001234@madoguchi.example.jp",
        "sips:desk3@[2001:db8::1]:5061;transport=tls",
        "sip:192.0.2.1:5060;transport=udp;lr",
        "sip:desk3:secret@example.net;maddr=192.0.2.9?Subject=hi&Priority=urgent",
        "tel:+81-134-00-1234",
        "sip:%61lice@example.net;n%61me=v%61lue",
    ] {
        assert_eq!(uri::parse(text).unwrap().to_string(), text);
    }
    let u = uri::parse("sip:[::1]:5060;lr").unwrap();
    assert_eq!(u.host, "[::1]");
    assert_eq!(u.host_ip(), Some("::1".parse().unwrap()));
    assert!(u.is_loose_route());
    let mut u = uri::parse("sip:desk3@192.0.2.40").unwrap();
    u.set_param("transport", Some("tcp"));
    u.port = Some(5062);
    assert_eq!(u.to_string(), "sip:desk3@192.0.2.40:5062;transport=tcp");
    assert!(uri::parse("sip:a b@c").is_err());
    assert!(uri::parse("<sip:a@b>").is_err());
    let na = "\"Otaru \\\"Desk\\\" 3\" <sip:desk3@madoguchi.example.jp;user=phone>;tag=9x";
    assert_eq!(uri::display_name(na).as_deref(), Some("Otaru \"Desk\" 3"));
    assert_eq!(uri::user_part(na).as_deref(), Some("desk3"));
    assert_eq!(
        uri::name_addr_uri(na).unwrap().param("user"),
        Some(Some("phone"))
    );
    assert_eq!(
        uri::user_part("sip:0901234@example.net;tag=1").as_deref(),
        Some("0901234")
    );
    assert_eq!(uri::display_name("<sip:a@b>"), None);
    assert_eq!(uri::user_part("\"unterminated <sip:a@b>"), None);
}

#[test]
fn branches_round_trip_and_reject_strangers() {
    for id in [
        branch::BranchId {
            slot: 0,
            generation: 0,
            branch: 0,
        },
        branch::BranchId {
            slot: u32::MAX,
            generation: u32::MAX,
            branch: u16::MAX,
        },
        branch::BranchId {
            slot: 4095,
            generation: branch::random_generation(),
            branch: 3,
        },
    ] {
        let b = branch::encode(id);
        assert!(branch::is_rfc3261(&b));
        assert!(b.bytes().all(is_token_char));
        assert_eq!(branch::decode(&b), Some(id));
    }
    for foreign in [
        "z9hG4bKtrunk01",
        "z9hG4bKmdg1.",
        "z9hG4bKmdg1.1.2",
        "z9hG4bKmdg1.1.2.3.4",
        "z9hG4bKmdg1.+1.2.3",
        "z9hG4bKmdg1.1.2.10000",
        "z9hG4bKmdg1.123456789.2.3",
        "Z9HG4BKMDG1.1.2.3",
        "390skdjuw",
        "",
    ] {
        assert_eq!(branch::decode(foreign), None, "{foreign}");
    }
}

#[test]
fn tags_and_call_ids_are_fresh() {
    let tags: std::collections::HashSet<String> = (0..1000).map(|_| new_tag()).collect();
    assert_eq!(tags.len(), 1000);
    let id = new_call_id();
    assert_eq!(id.len(), 32);
    assert_ne!(id, new_call_id());
    assert!(tags
        .iter()
        .all(|t| t.len() == 16 && t.bytes().all(is_token_char)));
}

#[test]
fn messages_and_errors_cross_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<SipMessage>();
    shareable::<WireError>();
    shareable::<StreamFramer>();
    shareable::<uri::SipUri>();
}

// ---- No panic on arbitrary bytes ---------------------------------------------------------

/// Every accessor and edit, on whatever parsed; none may panic.
fn exercise(m: &SipMessage) {
    let mut m = m.clone();
    let _ = (
        m.method(),
        m.status(),
        m.reason(),
        m.request_uri(),
        m.request_uri_text(),
    );
    let _ = (
        m.call_id(),
        m.cseq(),
        m.from_tag(),
        m.to_tag(),
        m.top_via(),
        m.vias(),
    );
    let _ = (
        m.via_count(),
        m.routes(),
        m.record_routes(),
        m.max_forwards(),
        m.body().len(),
    );
    let _ = (m.header("via"), m.headers_all("route"));
    let _ = validate_request(&m);
    let _ = validate_response(&m);
    if let Some(f) = m.header("From") {
        let _ = (uri::user_part(&f), uri::display_name(&f));
    }
    let r = SipMessage::response_to(&m, 400, "Bad Request", Some("fz"));
    let _ = SipMessage::parse_datagram(&r.to_bytes());
    let _ = SipMessage::cancel_for(&m, Some(REASON_COMPLETED_ELSEWHERE));
    let _ = SipMessage::ack_for_non2xx(&m, &r);
    let _ = m.set_received_rport("192.0.2.1".parse().unwrap(), 5060);
    let _ = m.decrement_max_forwards();
    let _ = m.remove_first_route();
    let _ = m.add_record_route("sip:192.0.2.1;lr");
    let _ = m.set_to_tag("t");
    let _ = m.pop_top_via_value();
    let _ = m.push_via("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx");
    let _ = SipMessage::parse_datagram(&m.to_bytes());
}

#[test]
fn arbitrary_bytes_never_panic() {
    let seeds: Vec<Vec<u8>> = CASES.iter().map(|(_, t, _)| wire(t)).collect();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const TOKENS: &[&[u8]] = &[
        b"\r\n",
        b"\r\n ",
        b",",
        b";",
        b"\"",
        b"<",
        b">",
        b":",
        b"%",
        b"%0",
        b"\0",
        b"\n",
        b"\r",
        b"[",
        b"]",
        b"=",
        b" ",
        b"\t",
        b"SIP/2.0",
        b"l: 99999\r\n",
        b"\xff\xfe",
        b"z9hG4bKmdg1.",
        b"Via: ",
        b"v:",
    ];
    let mut parsed = 0;
    for i in 0..4000 {
        let mut buf = seeds[i % seeds.len()].clone();
        for _ in 0..(1 + next() % 6) {
            let pos = if buf.is_empty() {
                0
            } else {
                (next() as usize) % buf.len()
            };
            match next() % 5 {
                0 => {
                    if !buf.is_empty() {
                        buf[pos] = next() as u8;
                    }
                }
                1 => {
                    let end = (pos + (next() as usize % 16)).min(buf.len());
                    buf.drain(pos..end);
                }
                2 => {
                    let t = TOKENS[(next() as usize) % TOKENS.len()];
                    buf.splice(pos..pos, t.iter().copied());
                }
                3 => buf.truncate(pos),
                _ => {
                    let end = (pos + (next() as usize % 32)).min(buf.len());
                    let chunk = buf[pos..end].to_vec();
                    buf.splice(pos..pos, chunk);
                }
            }
        }
        match SipMessage::parse_datagram(&buf) {
            Ok(m) => {
                parsed += 1;
                exercise(&m);
            }
            Err(e) => {
                if let Some(r) = e.response() {
                    exercise(r);
                }
            }
        }
        let mut f = StreamFramer::with_limit(4096);
        let cut = if buf.is_empty() {
            0
        } else {
            (next() as usize) % buf.len()
        };
        let frames = f.push(&buf[..cut]);
        for m in frames
            .messages
            .iter()
            .chain(f.push(&buf[cut..]).messages.iter())
        {
            exercise(m);
        }
        let _ = error_response_for_unparseable(&buf);
    }
    assert!(
        parsed > 500,
        "the mutations should not all be fatal ({parsed})"
    );
}

/// An OPTIONS with `line` as its last header before Content-Length; Call-ID `ctl@…` unless
/// `line` is a Call-ID.
fn options_with_line(line: &[u8]) -> Vec<u8> {
    let mut out = wire(
        "OPTIONS sip:0120000000@madoguchi.example.jp SIP/2.0
Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKctl
Max-Forwards: 70
From: \"Caller\" <sip:0134220001@trunk.example.net>;tag=ctl
To: <sip:0120000000@madoguchi.example.jp>
CSeq: 1 OPTIONS
",
    );
    if !line.starts_with(b"Call-ID") {
        out.extend_from_slice(b"Call-ID: ctl@192.0.2.9\r\n");
    }
    out.extend_from_slice(line);
    out.extend_from_slice(b"\r\nContent-Length: 0\r\n\r\n");
    out
}

#[test]
fn control_characters_in_header_values_are_refused() {
    for line in [
        &b"Call-ID: a\x00b@192.0.2.9"[..],
        b"Call-ID: \"\\\x00\"@192.0.2.9",
        b"Subject: bell \x07 here",
        b"User-Agent: esc \x1b[31m",
        b"Subject: del \x7f",
        b"To: \"bare \x00 nul\" <sip:0120000000@madoguchi.example.jp>",
    ] {
        let m = SipMessage::parse_datagram(&options_with_line(line)).expect("parses");
        assert_eq!(
            validate_request(&m),
            Err((400, "Control Character In Header")),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    // RFC 4475 §3.1.1.2: escaped inside a quoted string they are a valid quoted-pair; a tab
    // is white space.
    for line in [
        &b"Subject: \"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f\""[..],
        b"Subject: a\tb",
        "Subject: 窓口".as_bytes(),
    ] {
        let m = SipMessage::parse_datagram(&options_with_line(line)).expect("parses");
        assert_eq!(
            validate_request(&m),
            Ok(()),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
}

#[test]
fn a_via_sent_protocol_other_than_sip_2_0_is_refused() {
    let options = |vias: &str| {
        parse(&format!(
            "OPTIONS sip:0120000000@madoguchi.example.jp SIP/2.0
{vias}
Max-Forwards: 70
From: <sip:0134220001@trunk.example.net>;tag=v
To: <sip:0120000000@madoguchi.example.jp>
Call-ID: via@192.0.2.9
CSeq: 1 OPTIONS
Content-Length: 0

"
        ))
    };
    for vias in [
        "Via: SIP/3.0/UDP 192.0.2.9;branch=z9hG4bKv3",
        "Via: SIP/2.1/TCP 192.0.2.9;branch=z9hG4bKv21",
        "Via: SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKok\nVia: XMPP/2.0/UDP 192.0.2.7;branch=z9hG4bKx",
    ] {
        assert_eq!(
            validate_request(&options(vias)),
            Err((400, "Unsupported Via Protocol")),
            "{vias}"
        );
    }
    // Case does not matter for the name; an unknown transport is fine (RFC 4475 §3.1.1.10).
    for vias in [
        "Via: sip/2.0/UDP 192.0.2.9;branch=z9hG4bKlc",
        "Via: SIP/2.0/UNKNOWN 192.0.2.9;branch=z9hG4bKunk",
    ] {
        assert_eq!(validate_request(&options(vias)), Ok(()), "{vias}");
    }
    let resp = parse(
        "SIP/2.0 200 OK
Via: SIP/3.0/UDP 192.0.2.9;branch=z9hG4bKr
From: <sip:0134220001@trunk.example.net>;tag=v
To: <sip:0120000000@madoguchi.example.jp>;tag=w
Call-ID: via@192.0.2.9
CSeq: 1 OPTIONS
Content-Length: 0

",
    );
    assert_eq!(validate_response(&resp), Err("Unsupported Via Protocol"));
}

#[test]
fn what_was_read_follows_every_edit() {
    // Issue 17: Call-ID, tags, CSeq and the Via hops are parsed once and remembered; an edit
    // of the headers they come from must show in the next read, others must keep them.
    let mut m = parse(
        "INVITE sip:0120000000@10.0.0.1 SIP/2.0\n\
         Via: SIP/2.0/UDP 192.0.2.7:5060;branch=z9hG4bKone;rport\n\
         Max-Forwards: 70\n\
         From: <sip:0312345678@192.0.2.7>;tag=f1\n\
         To: <sip:0120000000@10.0.0.1>\n\
         Call-ID: c1@192.0.2.7\n\
         CSeq: 1 INVITE\n\
         Content-Length: 0\n\n",
    );
    assert_eq!(m.call_id().as_deref(), Some("c1@192.0.2.7"));
    assert_eq!(m.from_tag().as_deref(), Some("f1"));
    assert!(!m.has_to_tag());
    assert_eq!(m.vias().unwrap().len(), 1);
    assert_eq!(m.top_via().unwrap().rport, RPort::Requested);

    m.set_received_rport("198.51.100.9".parse().unwrap(), 40000)
        .unwrap();
    let top = m.top_via().unwrap();
    assert_eq!(top.received.as_deref(), Some("198.51.100.9"));
    assert_eq!(top.rport, RPort::Port(40000));

    m.push_via("SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKmdgtwo")
        .unwrap();
    assert_eq!(
        m.top_via().unwrap().branch.as_deref(),
        Some("z9hG4bKmdgtwo")
    );
    assert_eq!(m.vias().unwrap().len(), 2);
    assert!(m.pop_top_via_value());
    assert_eq!(m.top_via().unwrap().branch.as_deref(), Some("z9hG4bKone"));

    m.set_to_tag("t9").unwrap();
    assert_eq!(m.to_tag().as_deref(), Some("t9"));
    m.set_header("Call-ID", "c2@192.0.2.7").unwrap();
    assert_eq!(m.call_id().as_deref(), Some("c2@192.0.2.7"));
    m.set_header("CSeq", "2 INVITE").unwrap();
    assert_eq!(m.cseq(), Some((2, "INVITE".to_owned())));
    m.add_header_top("Via", "SIP/2.0/TCP 10.0.0.2;branch=z9hG4bKthree")
        .unwrap();
    assert_eq!(m.top_via().unwrap().transport, "TCP");
    // An edit elsewhere keeps what was read, and the message still reads the same.
    m.decrement_max_forwards().unwrap();
    m.add_record_route("sip:10.0.0.1;lr").unwrap();
    assert_eq!(m.from_tag().as_deref(), Some("f1"));
    assert_eq!(m.to_tag().as_deref(), Some("t9"));
    assert_eq!(m.vias().unwrap().len(), 2);
    let again = SipMessage::parse_datagram(&m.to_bytes()).unwrap();
    assert_eq!(again.top_via(), m.top_via());
    assert_eq!(again.vias().unwrap(), m.vias().unwrap());
    assert_eq!((again.call_id(), again.cseq()), (m.call_id(), m.cseq()));

    // A broken lower hop: the list is refused, the top hop still routes the answer.
    let broken = parse(
        "SIP/2.0 200 OK\n\
         Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKmdgx\n\
         Via: SIP/2.0/UDP [bad;branch=z9hG4bKy\n\
         From: <sip:a@b>;tag=1\nTo: <sip:c@d>;tag=2\nCall-ID: x\nCSeq: 1 INVITE\n\
         Content-Length: 0\n\n",
    );
    assert!(broken.vias().is_err());
    assert_eq!(
        broken.top_via().unwrap().branch.as_deref(),
        Some("z9hG4bKmdgx")
    );
    assert_eq!(validate_response(&broken), Err("Malformed Via"));
}
